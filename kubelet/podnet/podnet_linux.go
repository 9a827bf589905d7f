// Package podnet gives each pod a network namespace of its own, bind-mounted
// at a path its containers (and VMs) join. Until CNI configures them (the
// cni package), a pod's namespace has only loopback.
package podnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Manager keeps pod network namespaces under Dir, one file per pod named
// after the pod's UID.
type Manager struct {
	Dir string
}

// Path returns where the namespace of pod uid is (or would be) mounted.
func (m *Manager) Path(uid string) string { return filepath.Join(m.Dir, uid) }

// Ensure creates the namespace of pod uid with loopback up, unless it
// exists, and returns its path. It is idempotent, across agent restarts too.
func (m *Manager) Ensure(uid string) (string, error) {
	p := m.Path(uid)
	if isNS(p) {
		return p, nil
	}
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return "", fmt.Errorf("pod netns dir: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns file: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	// unshare(2) moves only the calling thread: do it on a thread of its
	// own, which is thrown away afterwards instead of being put back.
	go func() {
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare netns: %w", err)
			}
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(self, p, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind-mount netns at %s: %w", p, err)
			}
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return fmt.Errorf("loopback: %w", err)
			}
			if err := netlink.LinkSetUp(lo); err != nil {
				return fmt.Errorf("loopback up: %w", err)
			}
			return nil
		}()
		// The thread stays locked and ends with this goroutine.
	}()
	if err := <-errc; err != nil {
		_ = m.Remove(uid)
		return "", err
	}
	return p, nil
}

// Remove unmounts and deletes the namespace of pod uid; a missing one is not
// an error.
func (m *Manager) Remove(uid string) error {
	p := m.Path(uid)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", p, err)
	}
	return nil
}

// List returns the pod UIDs that have a namespace file, to collect those of
// pods that no longer exist.
func (m *Manager) List() ([]string, error) {
	ents, err := os.ReadDir(m.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var uids []string
	for _, e := range ents {
		uids = append(uids, e.Name())
	}
	return uids, nil
}

// isNS reports whether p is a mounted network namespace.
func isNS(p string) bool {
	var st unix.Statfs_t
	return unix.Statfs(p, &st) == nil && st.Type == unix.NSFS_MAGIC
}
