package vmsnap

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"golang.org/x/sys/unix"

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

// Remove removes the snapshot as the overlay snapshotter does, unless it
// holds an instance disk a running VM has open: then it is an
// ErrFailedPrecondition error and the snapshot stays whole. QEMU locks the
// image files it opens (OFD locks); that lock is what tells. containerd
// removes snapshots in its garbage collection, which tries again later.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	if mounts, err := s.Snapshotter.Mounts(ctx, key); err == nil {
		if upper := upperDir(mounts); upper != "" {
			disk := filepath.Join(upper, vmimage.InstanceDiskPath)
			inUse, err := locked(disk)
			if err != nil {
				return fmt.Errorf("remove %s: %w", key, err)
			}
			if inUse {
				return fmt.Errorf("remove %s: its instance disk is in use by a running VM (stop its task first): %w", key, errdefs.ErrFailedPrecondition)
			}
		}
	}
	return s.Snapshotter.Remove(ctx, key)
}

// upperDir returns the upperdir of an active snapshot's overlay mount, or
// the source of its bind mount (a snapshot without parents), "" for a view.
func upperDir(mounts []mount.Mount) string {
	if len(mounts) != 1 {
		return ""
	}
	m := mounts[0]
	if m.Type == "bind" {
		for _, o := range m.Options {
			if o == "ro" {
				return ""
			}
		}
		return m.Source
	}
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			return v
		}
	}
	return ""
}

// locked reports whether some process holds a lock on the file at path (a
// missing file is not locked).
func locked(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("locks of %s: %w", path, err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

// instanceDisk makes the instance disk in an active snapshot whose mounts
// (the overlay snapshotter's: one overlay mount with upperdir and lowerdir,
// top layer first) hold a VM disk in a lower layer. It returns the instance
// disk's path, or "" when the layers hold no disk.
func instanceDisk(mounts []mount.Mount) (string, error) {
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		return "", nil // no parent layers (a bind mount): no disk below
	}
	upper := upperDir(mounts)
	var lowers []string
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
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
