package volumes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs on dir (nosuid, nodev) with the given root mode and, when size > 0, that size in
// bytes; without a size the kernel's default (half of RAM) applies.
func mountTmpfs(dir string, mode os.FileMode, size int64) error {
	bits := uint64(mode.Perm())
	if mode&os.ModeSticky != 0 {
		bits |= unix.S_ISVTX
	}
	opts := "mode=" + strconv.FormatUint(bits, 8)
	if size > 0 {
		opts += ",size=" + strconv.FormatInt(size, 10)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s (%s): %w", dir, opts, err)
	}
	return nil
}

// isMountPoint reports whether something is mounted on dir.
func isMountPoint(dir string) (bool, error) {
	ok, err := mountinfo.Mounted(dir)
	if err != nil {
		return false, fmt.Errorf("check mount %s: %w", dir, err)
	}
	return ok, nil
}

// unmountAll unmounts every mount at or below dir, deepest first, found in /proc/self/mountinfo, so it works after
// a crash with no state kept. A mount still busy is detached lazily. It fails if a mount is left, so that the
// caller never removes files through a mount.
func unmountAll(dir string) error {
	real, err := filepath.EvalSymlinks(dir) // mountinfo holds real paths
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	dir = real
	for range 8 { // mounts may be stacked on one mount point
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			return fmt.Errorf("read mountinfo: %w", err)
		}
		if len(mounts) == 0 {
			return nil
		}
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
		for _, m := range mounts {
			err := unix.Unmount(m.Mountpoint, unix.UMOUNT_NOFOLLOW)
			if errors.Is(err, unix.EBUSY) {
				err = unix.Unmount(m.Mountpoint, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH)
			}
			if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
			}
		}
	}
	return fmt.Errorf("mounts are still left under %s after unmounting", dir)
}
