package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
)

func imageVolume(name, ref string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: ref}}}
}

// TestImageVolume sets up an image volume (a mount point), mounts a read-only "view" on it (a bind mount of a
// directory standing for the snapshot), checks the container's mounts (read-only, subPath only of what exists)
// and that Teardown unmounts it and removes the directory while the image's files stay.
func TestImageVolume(t *testing.T) {
	requiresRoot(t)
	f := newFixture(t)
	pod := newPod("uid-image", imageVolume("img", "registry.example/kitten:1.7"))
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	dir := dirs["img"]
	if want := filepath.Join(f.m.Root, "uid-image", "volumes", "img"); dir != want {
		t.Fatalf("image volume dir %q, want %q", dir, want)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mount point: %v, %v", fi, err)
	}

	// The snapshot's contents, as containerd's overlayfs snapshotter gives a one-layer view: a bind mount.
	layer := t.TempDir()
	if err := os.MkdirAll(filepath.Join(layer, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layer, "data.json"), []byte(`{"kitten.jpg":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	view := []mount.Mount{{Type: "bind", Source: layer, Options: []string{"rbind", "rw"}}}
	for range 2 { // idempotent: the second call finds the mount
		if err := f.m.MountImage(dir, view); err != nil {
			t.Fatal(err)
		}
	}
	if n := mountsUnder(t, dir); n != 1 {
		t.Errorf("%d mounts on the image volume, want 1", n)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data.json")); err != nil || !strings.Contains(string(b), "kitten.jpg") {
		t.Errorf("data.json through the mount: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err == nil {
		t.Errorf("writing into the image volume worked; want a read-only mount")
	}

	for _, tc := range []struct {
		name    string
		vm      corev1.VolumeMount
		src     string
		opts    []string
		wantErr error
	}{
		{name: "read-only even when not asked", vm: corev1.VolumeMount{Name: "img", MountPath: "/volume"},
			src: dir, opts: []string{"rbind", "ro", "rprivate"}},
		{name: "subPath", vm: corev1.VolumeMount{Name: "img", MountPath: "/etc-of-image", SubPath: "etc"},
			src: filepath.Join(dir, "etc"), opts: []string{"rbind", "ro", "rprivate"}},
		{name: "missing subPath is not created", vm: corev1.VolumeMount{Name: "img", MountPath: "/x", SubPath: "no/such"},
			wantErr: errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &corev1.Container{Name: "app", VolumeMounts: []corev1.VolumeMount{tc.vm}}
			ms, err := Mounts(pod, c, dirs)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ms[0].Source != tc.src || !reflect.DeepEqual(ms[0].Options, tc.opts) {
				t.Errorf("mount %+v, want source %s options %v", ms[0], tc.src, tc.opts)
			}
		})
	}

	if err := f.m.Teardown(context.Background(), pod.UID); err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, f.m.Root); n != 0 {
		t.Errorf("%d mounts left under the root after Teardown", n)
	}
	if _, err := os.Stat(filepath.Join(f.m.Root, "uid-image")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod directory after Teardown: %v", err)
	}
	if _, err := os.Stat(filepath.Join(layer, "data.json")); err != nil {
		t.Errorf("the image's files after Teardown: %v (Teardown must unmount, never remove through the mount)", err)
	}
}

func TestMountImageRefuses(t *testing.T) {
	f := newFixture(t)
	pod := newPod("uid-image-bad", imageVolume("img", "registry.example/kitten:1.7"))
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	view := []mount.Mount{{Type: "bind", Source: t.TempDir(), Options: []string{"rbind"}}}
	for _, tc := range []struct {
		name   string
		dir    string
		mounts []mount.Mount
		want   error
	}{
		{"outside the root", t.TempDir(), view, errdefs.ErrInvalidArgument},
		{"the root itself", f.m.Root, view, errdefs.ErrInvalidArgument},
		{"not set up", filepath.Join(f.m.Root, "uid-image-bad", "volumes", "other"), view, errdefs.ErrNotFound},
		{"no mounts", dirs["img"], nil, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.m.MountImage(tc.dir, tc.mounts); !errors.Is(err, tc.want) {
				t.Errorf("MountImage(%s): %v, want %v", tc.dir, err, tc.want)
			}
		})
	}
}

func TestReadOnlyOptions(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{nil, []string{"ro"}},
		{[]string{"rbind", "rw"}, []string{"rbind", "ro"}},
		{[]string{"ro", "lowerdir=/a:/b"}, []string{"lowerdir=/a:/b", "ro"}},
	} {
		if got := readOnly(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("readOnly(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
