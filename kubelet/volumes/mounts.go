package volumes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"

	"github.com/feather-edge/feather/kubelet/downward"
)

// Mounts returns the OCI bind mounts for the volumeMounts of container c of pod, in their order, given the host
// paths Setup returned. Each is {Type: "bind", Source, Destination: mountPath, Options: "rbind", "ro" or "rw",
// then the propagation ("rprivate" by default, "rslave" for HostToContainer, "rshared" for Bidirectional), then
// "rro" for recursiveReadOnly Enabled and any bindMountOptions (noexec, nodev, nosuid)}. configMap, secret,
// downwardAPI, projected and image volumes are always read-only, as in kubelet.
//
// subPath and subPathExpr mount a path inside the volume. They must be relative and hold no ".." element.
// Symlinks in them are followed and the mount source is the real path; one that leads out of the volume (a
// symlink a container planted in an emptyDir, say) is refused, as kubelet refuses it. A missing subPath is created
// as a directory with the mode of the volume directory, through os.Root so that no step can leave the volume,
// except in configMap, secret, downwardAPI, projected and image volumes, where it is an error. subPathExpr expands
// $(VAR) from the container's env entries that have a value or a fieldRef; any other $(VAR) is an error, since
// its value is not known here. The check happens when Mounts is called: a container that can write the volume and
// swaps a path element for a symlink between Mounts and the container's start could still redirect the mount;
// kubelet closes that window by bind-mounting the checked path itself first, which Feather does not do yet.
//
// Mounts reads the file system but changes nothing apart from creating missing subPath directories. The same
// mounts serve runc containers and OSv unikernels (the OSv shim passes directory bind mounts to the VM through
// virtio-fs).
func Mounts(pod *corev1.Pod, c *corev1.Container, dirs map[string]string) ([]specs.Mount, error) {
	vols := make(map[string]*corev1.Volume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	mounts := make([]specs.Mount, 0, len(c.VolumeMounts))
	for _, vm := range c.VolumeMounts {
		m, err := mountFor(pod, c, vols[vm.Name], vm, dirs)
		if err != nil {
			return nil, fmt.Errorf("container %q: volumeMount %q at %q: %w", c.Name, vm.Name, vm.MountPath, err)
		}
		mounts = append(mounts, m)
	}
	return mounts, nil
}

// Mounts is the package function Mounts, as a method so that a *Manager serves as the pods provider's whole
// volume interface (Setup, Mounts, Teardown).
func (m *Manager) Mounts(pod *corev1.Pod, c *corev1.Container, dirs map[string]string) ([]specs.Mount, error) {
	return Mounts(pod, c, dirs)
}

func mountFor(pod *corev1.Pod, c *corev1.Container, vol *corev1.Volume, vm corev1.VolumeMount, dirs map[string]string) (specs.Mount, error) {
	src, ok := dirs[vm.Name]
	if !ok {
		return specs.Mount{}, fmt.Errorf("volume %q is not set up (the pod has no such volume, or its setup failed): %w", vm.Name, errdefs.ErrNotFound)
	}
	if vm.MountPath == "" {
		return specs.Mount{}, fmt.Errorf("mountPath is empty: %w", errdefs.ErrInvalidArgument)
	}
	if vm.SubPath != "" && vm.SubPathExpr != "" {
		return specs.Mount{}, fmt.Errorf("set subPath or subPathExpr, not both: %w", errdefs.ErrInvalidArgument)
	}
	sub := vm.SubPath
	if vm.SubPathExpr != "" {
		var err error
		if sub, err = expandSubPathExpr(pod, c, vm.SubPathExpr); err != nil {
			return specs.Mount{}, err
		}
	}
	atomicVol := vol != nil && isAtomic(vol)
	imageVol := vol != nil && vol.Image != nil
	if sub != "" {
		var err error
		if src, err = resolveSubPath(src, sub, atomicVol || imageVol); err != nil {
			return specs.Mount{}, err
		}
	}

	ro := vm.ReadOnly || atomicVol || imageVol
	opts := []string{"rbind", "rw"}
	if ro {
		opts[1] = "ro"
	}
	switch p := vm.MountPropagation; {
	case p == nil || *p == corev1.MountPropagationNone:
		opts = append(opts, "rprivate")
	case *p == corev1.MountPropagationHostToContainer:
		opts = append(opts, "rslave")
	case *p == corev1.MountPropagationBidirectional:
		opts = append(opts, "rshared")
	default:
		return specs.Mount{}, fmt.Errorf("mountPropagation %q is unknown (want None, HostToContainer or Bidirectional): %w", *p, errdefs.ErrInvalidArgument)
	}
	if r := vm.RecursiveReadOnly; r != nil {
		switch *r {
		case corev1.RecursiveReadOnlyDisabled, corev1.RecursiveReadOnlyIfPossible:
		case corev1.RecursiveReadOnlyEnabled:
			if !vm.ReadOnly {
				return specs.Mount{}, fmt.Errorf("recursiveReadOnly Enabled needs readOnly: true: %w", errdefs.ErrInvalidArgument)
			}
			opts = append(opts, "rro")
		default:
			return specs.Mount{}, fmt.Errorf("recursiveReadOnly %q is unknown: %w", *r, errdefs.ErrInvalidArgument)
		}
	}
	for _, o := range vm.BindMountOptions {
		switch corev1.BindMountOption(o) {
		case corev1.BindMountOptionNoExec, corev1.BindMountOptionNoDev, corev1.BindMountOptionNoSUID:
			opts = append(opts, o)
		default:
			return specs.Mount{}, fmt.Errorf("bindMountOption %q is not allowed (noexec, nodev, nosuid): %w", o, errdefs.ErrInvalidArgument)
		}
	}
	return specs.Mount{Destination: vm.MountPath, Type: "bind", Source: src, Options: opts}, nil
}

// resolveSubPath returns the real host path of sub inside the volume at volDir, creating a missing directory
// unless mustExist (atomic-writer and image volumes, which are read-only). Symlinks are followed, and a result
// outside the volume is refused, as kubelet refuses it.
func resolveSubPath(volDir, sub string, mustExist bool) (string, error) {
	clean, err := cleanSubPath(sub)
	if err != nil {
		return "", err
	}
	realVol, err := filepath.EvalSymlinks(volDir)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	fi, err := os.Stat(realVol)
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("subPath %q: the volume is not a directory (%s): %w", sub, volDir, errdefs.ErrInvalidArgument)
	}
	p := filepath.Join(realVol, clean)
	real, err := filepath.EvalSymlinks(p)
	if errors.Is(err, fs.ErrNotExist) {
		if mustExist {
			return "", fmt.Errorf("subPath %q does not exist in the volume: %w", sub, errdefs.ErrNotFound)
		}
		// The deepest part that exists may be a symlink pointing out: check it before creating the rest.
		if err := checkInside(realVol, sub, deepestExisting(realVol, clean)); err != nil {
			return "", err
		}
		if err := mkdirIn(realVol, clean, fi.Mode().Perm()); err != nil {
			return "", fmt.Errorf("create subPath %q in the volume: %w", sub, err)
		}
		real, err = filepath.EvalSymlinks(p)
	}
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	if err := checkInside(realVol, sub, real); err != nil {
		return "", err
	}
	return real, nil
}

// deepestExisting returns the real path of the longest prefix of rel below root that resolves.
func deepestExisting(root, rel string) string {
	for p := filepath.Dir(filepath.Join(root, rel)); len(p) > len(root); p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return real
		}
	}
	return root
}

// checkInside refuses a real path outside the real volume root.
func checkInside(realVol, sub, real string) error {
	if real != realVol && !strings.HasPrefix(real, realVol+string(filepath.Separator)) {
		return fmt.Errorf("subPath %q resolves to %s, outside the volume (a symlink points out of it): %w", sub, real, errdefs.ErrInvalidArgument)
	}
	return nil
}

// cleanSubPath refuses an absolute subPath or one with a ".." element, and cleans it.
func cleanSubPath(sub string) (string, error) {
	if strings.HasPrefix(sub, "/") || filepath.IsAbs(sub) {
		return "", fmt.Errorf("subPath %q must be relative to the volume, not absolute: %w", sub, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsRune(sub, 0) {
		return "", fmt.Errorf("subPath %q contains a NUL byte: %w", sub, errdefs.ErrInvalidArgument)
	}
	for _, seg := range strings.Split(sub, "/") {
		if seg == ".." {
			return "", fmt.Errorf("subPath %q must not contain '..': %w", sub, errdefs.ErrInvalidArgument)
		}
	}
	clean := path.Clean(sub)
	if clean == "." {
		return "", fmt.Errorf("subPath %q names the volume itself: %w", sub, errdefs.ErrInvalidArgument)
	}
	return clean, nil
}

// mkdirIn creates the directories of rel below root, each with mode perm exactly. os.Root keeps every step below
// root, even through symlinks a container planted.
func mkdirIn(root, rel string, perm os.FileMode) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	segs := strings.Split(rel, "/")
	for i := range segs {
		p := strings.Join(segs[:i+1], "/")
		err := r.Mkdir(p, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := r.Chmod(p, perm); err != nil {
			return err
		}
	}
	return nil
}

// expandSubPathExpr expands the $(VAR) references of a subPathExpr from the container's env.
func expandSubPathExpr(pod *corev1.Pod, c *corev1.Container, expr string) (string, error) {
	env := map[string]string{}
	unknown := map[string]string{} // name → why its value is not known here
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = downward.Expand(e.Value, func(name string) (string, bool) { v, ok := env[name]; return v, ok })
			delete(unknown, e.Name)
		case e.ValueFrom.FieldRef != nil:
			v, err := downward.FieldValue(pod, pod.Spec.NodeName, e.ValueFrom.FieldRef)
			if err != nil {
				unknown[e.Name] = err.Error()
				delete(env, e.Name)
				continue
			}
			env[e.Name] = v
			delete(unknown, e.Name)
		default:
			unknown[e.Name] = "it comes from a configMap, secret or resource"
			delete(env, e.Name)
		}
	}
	var bad []string
	out := downward.Expand(expr, func(name string) (string, bool) {
		if v, ok := env[name]; ok {
			return v, true
		}
		why, ok := unknown[name]
		if !ok {
			why = "the container has no such env entry"
		}
		bad = append(bad, fmt.Sprintf("$(%s): %s", name, why))
		return "", false
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("subPathExpr %q: cannot expand %s (only env entries with a value or a fieldRef can be used): %w",
			expr, strings.Join(bad, "; "), errdefs.ErrInvalidArgument)
	}
	return out, nil
}
