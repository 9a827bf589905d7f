// Package vmimage defines Feather's VM image format: how an OCI image marks
// itself as a unikernel (image config labels) and where its disk, kernel and
// initrd lie in the image's root filesystem. Flint writes it; the shim and the
// agent read it. It is the one definition of the format.
//
// A VM image is an ordinary OCI image. Its config carries
//
//	Labels["feather.backend"] = "osv"   // which guest; no label: a container
//	Labels["feather.runtime"] = "qemu"  // which hypervisor; default "qemu"
//
// and its layers put into the root filesystem
//
//	feather/disk     the boot disk, raw or qcow2 (told apart by content)
//	feather/kernel   optional kernel for direct boot (-kernel … -append …)
//	feather/initrd   optional initial ramdisk for that kernel
//
// The disk's layer is a tar layer of feather/disk, or a disk layer
// (MediaTypeDiskLayerRaw, MediaTypeDiskLayerQCOW2): the disk's bytes, which
// Feather's snapshotter links into place at feather/disk without a copy.
//
// And, in a container's root filesystem prepared by Feather's snapshotter,
//
//	feather/instance.qcow2  the container's own disk: a qcow2 overlay
//	                        backed by feather/disk, which the shim boots
//
// The image's Entrypoint and Cmd are the guest's command, Env its environment
// and WorkingDir its working directory, as for a container.
package vmimage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image config labels.
const (
	// LabelBackend names the guest kind: BackendOSV. An image without it
	// is a container.
	LabelBackend = "feather.backend"
	// LabelRuntime names the hypervisor; RuntimeQEMU when absent.
	LabelRuntime = "feather.runtime"

	// legacyBackend and legacyRuntime are the top-level config keys that
	// the paper's prototype (FLEDGE) wrote; they are read when the labels
	// are absent, so its images still run.
	legacyBackend = "fledge.backend"
	legacyRuntime = "fledge.hypervisor"
)

// Known backends and runtimes.
const (
	BackendOSV  = "osv"
	RuntimeQEMU = "qemu"
)

// Backends and Runtimes list what this version of Feather runs.
var (
	Backends = []string{BackendOSV}
	Runtimes = []string{RuntimeQEMU}
)

// Paths in the image's root filesystem, relative to its root.
const (
	DiskPath   = "feather/disk"
	KernelPath = "feather/kernel"
	InitrdPath = "feather/initrd"
	// InstanceDiskPath is the instance disk that the feather snapshotter
	// makes in a container's snapshot (never in an image's layer): a
	// qcow2 overlay over the disk, whose growth is the container's.
	InstanceDiskPath = "feather/instance.qcow2"
)

// OwnDir is the directory holding a snapshot's own files — the upperdir
// of its overlay mount, the source of its writable bind mount (a snapshot
// without parents) — given the snapshot's one mount's type, source and
// options; "" for anything else (a read-only view, several mounts). The
// instance disk is OwnDir's InstanceDiskPath: the feather snapshotter makes
// it there, and the shim opens it there rather than through the overlay, so
// that the locks QEMU takes on it are on the file the snapshotter checks.
func OwnDir(mountType, source string, options []string) string {
	switch mountType {
	case "bind", "rbind":
		for _, o := range options {
			if o == "ro" {
				return ""
			}
		}
		return source
	case "overlay":
		for _, o := range options {
			if v, ok := strings.CutPrefix(o, "upperdir="); ok {
				return v
			}
		}
	}
	return ""
}

// Kind is what an image asks to run on.
type Kind struct {
	// Backend is the guest kind, "" for a container.
	Backend string
	// Runtime is the hypervisor; set whenever Backend is.
	Runtime string
}

// IsVM reports whether the image is a VM image rather than a container.
func (k Kind) IsVM() bool { return k.Backend != "" }

// Validate returns an ErrInvalidArgument error naming the unknown backend or
// runtime, and what is known, if k is not something Feather runs.
func (k Kind) Validate() error {
	if !k.IsVM() {
		return nil
	}
	if !slices.Contains(Backends, k.Backend) {
		return fmt.Errorf("image label %s=%q: unknown backend (known: %v): %w", LabelBackend, k.Backend, Backends, errdefs.ErrInvalidArgument)
	}
	if !slices.Contains(Runtimes, k.Runtime) {
		return fmt.Errorf("image label %s=%q: unknown runtime (known: %v): %w", LabelRuntime, k.Runtime, Runtimes, errdefs.ErrInvalidArgument)
	}
	return nil
}

// KindOf reads the kind from an image config blob (the JSON of
// ocispec.Image): the labels, else the prototype's top-level keys. The
// runtime defaults to RuntimeQEMU for a VM image. It does not validate.
func KindOf(config []byte) (Kind, error) {
	var img struct {
		ocispec.Image
		LegacyBackend string `json:"fledge.backend"`
		LegacyRuntime string `json:"fledge.hypervisor"`
	}
	if err := json.Unmarshal(config, &img); err != nil {
		return Kind{}, fmt.Errorf("parse image config: %w", err)
	}
	labels := map[string]string{LabelBackend: img.LegacyBackend, LabelRuntime: img.LegacyRuntime}
	for _, key := range []string{LabelBackend, LabelRuntime} {
		if v := img.Config.Labels[key]; v != "" {
			labels[key] = v
		}
	}
	return KindFromLabels(labels), nil
}

// KindFromLabels reads the kind from labels — an image config's, or a
// container's, onto which ctr run and the agent copy them. The runtime
// defaults to RuntimeQEMU for a VM image. It does not validate.
func KindFromLabels(labels map[string]string) Kind {
	k := Kind{Backend: labels[LabelBackend], Runtime: labels[LabelRuntime]}
	if k.Backend == "" {
		return Kind{}
	}
	if k.Runtime == "" {
		k.Runtime = RuntimeQEMU
	}
	return k
}

// Labels returns the config labels that mark an image as kind k.
func (k Kind) Labels() map[string]string {
	if !k.IsVM() {
		return nil
	}
	return map[string]string{LabelBackend: k.Backend, LabelRuntime: k.Runtime}
}

// Disk formats.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
)

// qcow2Magic starts every qcow2 file ("QFI\xfb").
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// DiskFormat tells a qcow2 disk from a raw one by its first bytes, as
// qemu-img does; a raw disk has no magic, so anything else is raw.
func DiskFormat(r io.Reader) (string, error) {
	head := make([]byte, len(qcow2Magic))
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	if n == len(qcow2Magic) && bytes.Equal(head, qcow2Magic) {
		return FormatQCOW2, nil
	}
	return FormatRaw, nil
}

// Layout is where a VM image's files are in a mounted root filesystem.
type Layout struct {
	// Disk is the boot disk's path; DiskFormat its format.
	Disk, DiskFormat string
	// Kernel and Initrd are paths, "" when the image has none.
	Kernel, Initrd string
	// Instance is the container's instance disk that the feather
	// snapshotter made (a qcow2 overlay over Disk), "" when there is none:
	// then the shim makes its own.
	Instance string
}

// Find locates the VM files under rootfs. With no disk it returns an
// ErrNotFound error saying what a VM image must hold; an empty disk, or an
// initrd without a kernel, is ErrInvalidArgument.
func Find(rootfs string) (Layout, error) {
	l := Layout{Disk: filepath.Join(rootfs, DiskPath)}
	f, err := os.Open(l.Disk)
	if errors.Is(err, os.ErrNotExist) {
		return Layout{}, fmt.Errorf("image has no VM disk at /%s: not a Feather VM image (pack one with flint pack): %w", DiskPath, errdefs.ErrNotFound)
	}
	if err != nil {
		return Layout{}, fmt.Errorf("open VM disk: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Layout{}, err
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return Layout{}, fmt.Errorf("VM disk /%s is empty or not a regular file: %w", DiskPath, errdefs.ErrInvalidArgument)
	}
	if l.DiskFormat, err = DiskFormat(f); err != nil {
		return Layout{}, fmt.Errorf("read VM disk: %w", err)
	}
	for _, opt := range []struct {
		rel  string
		into *string
	}{{KernelPath, &l.Kernel}, {InitrdPath, &l.Initrd}} {
		p := filepath.Join(rootfs, opt.rel)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			*opt.into = p
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return Layout{}, err
		}
	}
	inst := filepath.Join(rootfs, InstanceDiskPath)
	if fi, err := os.Stat(inst); err == nil && fi.Mode().IsRegular() {
		f, err := os.Open(inst)
		if err != nil {
			return Layout{}, fmt.Errorf("open instance disk: %w", err)
		}
		format, err := DiskFormat(f)
		f.Close()
		if err != nil {
			return Layout{}, fmt.Errorf("read instance disk: %w", err)
		}
		if format != FormatQCOW2 {
			return Layout{}, fmt.Errorf("instance disk /%s is not qcow2: %w", InstanceDiskPath, errdefs.ErrInvalidArgument)
		}
		l.Instance = inst
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Layout{}, err
	}
	if l.Initrd != "" && l.Kernel == "" {
		return Layout{}, fmt.Errorf("image has /%s but no /%s to boot it with: %w", InitrdPath, KernelPath, errdefs.ErrInvalidArgument)
	}
	return l, nil
}
