// Package vmsnap is Feather's containerd snapshotter: containerd's overlay
// snapshotter for every layer, plus, in each active snapshot prepared on a
// VM image, that container's instance disk.
//
// A VM image's layer holds its boot disk at vmimage.DiskPath; committed, the
// layer is kept once, read-only, in the snapshot's directory. Preparing an
// active snapshot whose parent chain holds such a disk writes into the new
// snapshot's upper directory a qcow2 overlay backed by that disk, at
// vmimage.InstanceDiskPath: four clusters of metadata, whatever the disk's
// size. The shim boots it; every byte the VM writes lands in the snapshot,
// so the snapshot's usage (`ctr snapshots usage`) is the VM's writes, and
// removing the snapshot (or containerd's garbage collection) removes them.
//
// The snapshots containerd's unpacker prepares to extract a layer into
// (keys starting with snapshots.UnpackKeyPrefix) get no instance disk: they
// become image layers when committed.
package vmsnap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/feather-edge/feather/vmimage"
	"github.com/feather-edge/feather/vmimage/qcow2"
)

// DefaultRoot is where the snapshotter keeps its state (bolt metadata and
// snapshot directories) unless told otherwise.
const DefaultRoot = "/var/lib/feather-snapshotter"

// Snapshotter is containerd's overlay snapshotter with VM instance disks.
// It is safe for concurrent use.
type Snapshotter struct {
	snapshots.Snapshotter
	cleaner snapshots.Cleaner
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// New opens (or creates) the snapshotter whose state is under root: the
// overlay snapshotter's metadata.db and snapshots/ folder, as containerd's
// own overlayfs snapshotter lays them out. The caller closes it.
func New(root string) (*Snapshotter, error) {
	sn, err := overlay.NewSnapshotter(root)
	if err != nil {
		return nil, fmt.Errorf("overlay snapshotter at %s: %w", root, err)
	}
	c, ok := sn.(snapshots.Cleaner)
	if !ok {
		sn.Close()
		return nil, fmt.Errorf("overlay snapshotter has no Cleanup: %w", errdefs.ErrNotImplemented)
	}
	return &Snapshotter{Snapshotter: sn, cleaner: c}, nil
}

// Cleanup removes the directories of removed snapshots (containerd calls it
// after its garbage collection). A snapshotter that never held a snapshot
// has nothing to clean: not an error.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	if err := s.cleaner.Cleanup(ctx); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// Prepare creates an active snapshot as the overlay snapshotter does and,
// when its parent chain holds a VM disk, the instance disk in it. If the
// instance disk cannot be made, the snapshot is removed again and the error
// returned.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) (_ []mount.Mount, retErr error) {
	mounts, err := s.Snapshotter.Prepare(ctx, key, parent, opts...)
	if err != nil || parent == "" || strings.HasPrefix(key, snapshots.UnpackKeyPrefix) {
		return mounts, err
	}
	defer func() {
		if retErr != nil {
			if err := s.Snapshotter.Remove(ctx, key); err != nil {
				log.G(ctx).WithError(err).WithField("key", key).Warn("remove the snapshot whose instance disk failed")
			}
		}
	}()
	start := time.Now()
	made, err := instanceDisk(mounts)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", key, err)
	}
	if made != "" {
		log.G(ctx).WithField("key", key).WithField("disk", made).WithField("took", time.Since(start)).Debug("instance disk made")
	}
	return mounts, nil
}

// instanceDisk makes the instance disk in an active snapshot whose mounts
// (the overlay snapshotter's: one overlay mount with upperdir and lowerdir,
// top layer first) hold a VM disk in a lower layer. It returns the instance
// disk's path, or "" when the layers hold no disk.
func instanceDisk(mounts []mount.Mount) (string, error) {
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		return "", nil // no parent layers (a bind mount): no disk below
	}
	var upper string
	var lowers []string
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		} else if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lowers = strings.Split(v, ":")
		}
	}
	if upper == "" {
		return "", nil // a view
	}
	base, err := findDisk(lowers)
	if err != nil || base == "" {
		return "", err
	}
	format, err := diskFormat(base)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(upper, filepath.Dir(vmimage.InstanceDiskPath))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("instance disk: %w", err)
	}
	disk := filepath.Join(upper, vmimage.InstanceDiskPath)
	if err := qcow2.CreateOverlay(disk, base, format); err != nil {
		return "", fmt.Errorf("instance disk: %w", err)
	}
	return disk, nil
}

// findDisk returns the VM disk that the layers (top first) show at
// vmimage.DiskPath, "" when none shows one (none has it, or the top one
// that names it deleted it). Two layers that both carry a disk are an
// ErrInvalidArgument error: an image holds one VM disk.
func findDisk(lowers []string) (string, error) {
	var found string
	for _, l := range lowers {
		p := filepath.Join(l, vmimage.DiskPath)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("look for the VM disk: %w", err)
		}
		if !fi.Mode().IsRegular() {
			if found == "" {
				return "", nil // a whiteout (or something else) hides the disks below
			}
			break
		}
		if found != "" {
			return "", fmt.Errorf("two layers of the image carry a VM disk at /%s (%s and %s): an image holds one; pack it again with flint pack: %w",
				vmimage.DiskPath, found, p, errdefs.ErrInvalidArgument)
		}
		if fi.Size() == 0 {
			return "", fmt.Errorf("VM disk /%s is empty: %w", vmimage.DiskPath, errdefs.ErrInvalidArgument)
		}
		found = p
	}
	return found, nil
}

// diskFormat reads whether the disk at path is qcow2 or raw.
func diskFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("VM disk: %w", err)
	}
	defer f.Close()
	format, err := vmimage.DiskFormat(f)
	if err != nil {
		return "", fmt.Errorf("VM disk %s: %w", path, err)
	}
	return format, nil
}
