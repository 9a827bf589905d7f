// Package build assembles the images of Feather's OSv-protocol test guest
// from Debian's cloud kernel package (unpacked), its modules and the
// guest-init binary: an initramfs, a BIOS boot disk, and the two OCI image
// layout tarballs that `ctr image import` reads. See ../README.md.
package build

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/ocilayout"
	"github.com/feather-edge/feather/vmimage"
)

// The images Build writes, in Options.OutDir, and their names.
const (
	DirectFile = "testguest-direct.oci.tar"
	DiskFile   = "testguest-disk.oci.tar"
	DirectRef  = "docker.io/feather/testguest-direct:latest"
	DiskRef    = "docker.io/feather/testguest-disk:latest"
)

// directDiskSize is the size of the direct boot image's disk: zeros, since
// the guest's root is its initramfs, but an image needs a disk.
const directDiskSize = 1 << 20

// Options are Build's inputs.
type Options struct {
	// KernelDir is the unpacked kernel package (dpkg-deb -x): it holds
	// boot/vmlinuz-VERSION and lib/modules/VERSION.
	KernelDir string
	// Init is the static guest-init binary.
	Init string
	// OutDir receives the image tarballs.
	OutDir string
	// MBR is the MBR boot code; DefaultMBR when "".
	MBR string
	// Log gets one line per step; nil for none.
	Log io.Writer
}

// Build writes DirectFile and DiskFile into o.OutDir. Each is written under
// a temporary name and renamed, so a file there is always complete.
func Build(ctx context.Context, o Options) error {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if o.MBR == "" {
		o.MBR = DefaultMBR
	}
	kernelPath, modDir, err := findKernel(o.KernelDir)
	if err != nil {
		return err
	}
	kernel, err := os.ReadFile(kernelPath)
	if err != nil {
		return err
	}
	initBin, err := os.ReadFile(o.Init)
	if err != nil {
		return fmt.Errorf("read guest-init binary: %w", err)
	}
	tree, err := OpenModuleTree(modDir)
	if err != nil {
		return err
	}
	mods, err := tree.Resolve(GuestModules)
	if err != nil {
		return err
	}
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = m.Name
	}
	logf("modules in load order: %v", names)
	initrd, err := Initramfs(initBin, mods)
	if err != nil {
		return fmt.Errorf("make initramfs: %w", err)
	}
	logf("kernel %s: %d bytes; initramfs: %d bytes", filepath.Base(kernelPath), len(kernel), len(initrd))

	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(o.OutDir, ".work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	direct := map[string][]byte{
		vmimage.KernelPath: kernel,
		vmimage.InitrdPath: initrd,
		vmimage.DiskPath:   make([]byte, directDiskSize),
	}
	if err := writeImage(filepath.Join(o.OutDir, DirectFile), DirectRef, direct); err != nil {
		return err
	}
	logf("wrote %s", DirectFile)

	qcow := filepath.Join(work, "disk.qcow2")
	if err := BootDisk(ctx, work, o.MBR, kernel, initrd, qcow); err != nil {
		return err
	}
	disk, err := os.ReadFile(qcow)
	if err != nil {
		return err
	}
	if err := writeImage(filepath.Join(o.OutDir, DiskFile), DiskRef, map[string][]byte{vmimage.DiskPath: disk}); err != nil {
		return err
	}
	logf("wrote %s (boot disk %d bytes)", DiskFile, len(disk))
	return nil
}

// findKernel returns the vmlinuz and the module tree of an unpacked kernel
// package; it must hold exactly one kernel.
func findKernel(dir string) (kernel, modules string, err error) {
	ks, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(ks) != 1 {
		return "", "", fmt.Errorf("%s: want one boot/vmlinuz-*, found %d: %w (unpack a linux-image-*-cloud-amd64 package there with dpkg-deb -x)", dir, len(ks), errNoKernel)
	}
	version := filepath.Base(ks[0])[len("vmlinuz-"):]
	modules = filepath.Join(dir, "lib", "modules", version)
	if fi, err := os.Stat(modules); err != nil || !fi.IsDir() {
		return "", "", fmt.Errorf("%s: no module tree lib/modules/%s for the kernel", dir, version)
	}
	return ks[0], modules, nil
}

// writeImage writes an OCI image tarball of one layer holding files (by
// path in the root filesystem), with the test guest's config.
func writeImage(path, ref string, files map[string][]byte) error {
	layer, err := Layer(files)
	if err != nil {
		return err
	}
	config := ocispec.Image{
		Created:  &ocilayout.Epoch,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{
			Env:    []string{"PATH=/"},
			Cmd:    []string{"/hello"},
			Labels: vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}.Labels(),
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}},
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := ocilayout.WriteFile(tmp, ref, config, [][]byte{layer}); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// Layer returns an uncompressed tar layer of files under their directories,
// in sorted order with fixed times, so the same files give the same bytes.
func Layer(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, name := range sortedKeys(files) {
		for d := filepath.Dir(name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedKeys(dirs) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: ocilayout.Epoch}); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(files) {
		b := files[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: ocilayout.Epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
