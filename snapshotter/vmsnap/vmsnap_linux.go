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
	"sync"
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

	// ctx ends with Close; it ends the removals waiting for a VM.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	// waiting are the keys of the snapshots whose removal waits for their
	// VM to let go of the instance disk.
	waiting map[string]bool
	wg      sync.WaitGroup
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
	ctx, cancel := context.WithCancel(context.Background())
	return &Snapshotter{Snapshotter: sn, cleaner: c, ctx: ctx, cancel: cancel, waiting: map[string]bool{}}, nil
}

// Close ends the removals still waiting for a VM (containerd's next
// garbage collection removes those snapshots) and closes the snapshotter.
func (s *Snapshotter) Close() error {
	s.cancel()
	s.wg.Wait()
	return s.Snapshotter.Close()
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
// ErrFailedPrecondition error, the snapshot stays whole while the VM runs,
// and it is removed once the VM has let go of the disk. QEMU locks the
// image files it opens (OFD locks); that lock is what tells.
//
// containerd calls Remove only from its garbage collection, after it has
// dropped the snapshot from its own metadata (`ctr snapshots rm` succeeds
// at once); it logs the refusal and would try again only when another
// snapshot of this snapshotter goes. So the snapshotter finishes the
// removal itself, without which the VM's writes would stay on disk until
// then. A snapshotter restarted meanwhile leaves it to containerd's next
// collection.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	if disk := s.instanceDiskOf(ctx, key); disk != "" {
		inUse, err := locked(disk)
		if err != nil {
			return fmt.Errorf("remove %s: %w", key, err)
		}
		if inUse {
			s.removeOnceFree(key, disk)
			return fmt.Errorf("remove %s: its instance disk is in use by a running VM; it is removed when the VM stops: %w", key, errdefs.ErrFailedPrecondition)
		}
	}
	return s.Snapshotter.Remove(ctx, key)
}

// instanceDiskOf is the path of the instance disk an active snapshot may
// hold, "" for a snapshot that can hold none (a view, a committed one).
func (s *Snapshotter) instanceDiskOf(ctx context.Context, key string) string {
	mounts, err := s.Snapshotter.Mounts(ctx, key)
	if err != nil {
		return ""
	}
	upper := upperDir(mounts)
	if upper == "" {
		return ""
	}
	return filepath.Join(upper, vmimage.InstanceDiskPath)
}

// freeCheck is how often a removal waiting for a VM looks at its disk's
// locks. A lock can be waited for (F_OFD_SETLKW) but not with a deadline or
// a cancel, so it is polled.
const freeCheck = time.Second

// removeOnceFree removes snapshot key once no process locks disk, in the
// background, unless a removal of key already waits.
func (s *Snapshotter) removeOnceFree(key, disk string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting[key] || s.ctx.Err() != nil {
		return
	}
	s.waiting[key] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.waiting, key)
			s.mu.Unlock()
		}()
		ctx := s.ctx
		l := log.G(ctx).WithField("key", key)
		t := time.NewTicker(freeCheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			inUse, err := locked(disk)
			if err != nil {
				l.WithError(err).Warn("a removal waiting for its VM: cannot read the disk's locks; left to containerd's next garbage collection")
				return
			}
			if inUse {
				continue
			}
			// The namespace of containerd's calls does not matter to the
			// snapshotter (containerd keeps namespaces itself).
			if err := s.Snapshotter.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
				l.WithError(err).Warn("remove the snapshot whose VM stopped")
				return
			}
			l.Info("removed the snapshot whose removal waited for its VM to stop")
			return
		}
	}()
}

// upperDir returns the directory of an active snapshot's own files (see
// vmimage.OwnDir), "" for a view.
func upperDir(mounts []mount.Mount) string {
	if len(mounts) != 1 {
		return ""
	}
	return vmimage.OwnDir(mounts[0].Type, mounts[0].Source, mounts[0].Options)
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
