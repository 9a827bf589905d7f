package volumes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
)

// setupImage makes the mount point of an image volume: an empty directory, mode 0755. The agent pulls the image
// and mounts a read-only view of it there with MountImage when a container that mounts the volume starts (pull
// errors are the container's, as in kubelet); Teardown unmounts it.
func (m *Manager) setupImage(pod *corev1.Pod, v *corev1.Volume) (string, error) {
	dir := m.volumeDir(pod.UID, v.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create image volume mount point: %w", err)
	}
	return dir, nil
}

// MountImage mounts mounts — the mounts of a containerd view snapshot of an image — on dir, an image volume's
// directory under Root as Setup returned it, read-only: every mount gets "ro", so even a snapshot that is not a
// view cannot be written through it. It is idempotent: a dir that is a mount point already is left as it is (the
// view of the pod's first container that mounts the volume serves the others, and the agent after a restart).
// Teardown unmounts it, also after a crash (it finds the mount in /proc/self/mountinfo).
func (m *Manager) MountImage(dir string, mounts []mount.Mount) error {
	if err := m.checkRoot(); err != nil {
		return err
	}
	rel, err := filepath.Rel(m.Root, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("image volume directory %s is not under %s: %w", dir, m.Root, errdefs.ErrInvalidArgument)
	}
	if len(mounts) == 0 {
		return fmt.Errorf("image volume %s: the snapshot has no mounts: %w", dir, errdefs.ErrInvalidArgument)
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image volume %s is not set up: %w", dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("image volume %s is not a directory: %w", dir, errdefs.ErrInvalidArgument)
	}
	mounted, err := isMountPoint(dir)
	if err != nil || mounted {
		return err
	}
	ro := make([]mount.Mount, len(mounts))
	for i, mt := range mounts {
		mt.Options = readOnly(mt.Options)
		ro[i] = mt
	}
	if err := mount.All(ro, dir); err != nil {
		if uerr := unmountAll(dir); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return fmt.Errorf("mount image volume on %s: %w", dir, err)
	}
	return nil
}

// readOnly returns mount options with "rw" dropped and "ro" added once.
func readOnly(opts []string) []string {
	out := make([]string, 0, len(opts)+1)
	for _, o := range opts {
		if o != "rw" && o != "ro" {
			out = append(out, o)
		}
	}
	return append(out, "ro")
}
