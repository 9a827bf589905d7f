package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

func TestMounts(t *testing.T) {
	hostDir := t.TempDir()
	hostFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(hostFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, configMap("app", map[string]string{"app.conf": "port=80"}))
	pod := newPod("uid-mounts",
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		cmVolume("cfg", corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}),
		corev1.Volume{Name: "hostdir", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}}},
		corev1.Volume{Name: "hostfile", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostFile, Type: ptr(corev1.HostPathFile)}}},
	)
	pod.Spec.NodeName = "edge-7"
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	scratch := dirs["scratch"]
	if err := os.MkdirAll(filepath.Join(scratch, "data", "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Symlinks a container could plant in a shared emptyDir, pointing out of the volume.
	if err := os.Symlink("/etc", filepath.Join(scratch, "abs-escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../..", filepath.Join(scratch, "rel-escape")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "not-there")
	if err := os.Symlink(outside, filepath.Join(scratch, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("data", filepath.Join(scratch, "inside")); err != nil {
		t.Fatal(err)
	}
	cfgVersion := filepath.Join(dirs["cfg"], versions(t, dirs["cfg"])[0])

	propagation := func(p corev1.MountPropagationMode) *corev1.MountPropagationMode { return &p }
	bind := func(src, dst string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
	}
	for _, tc := range []struct {
		name  string
		vm    corev1.VolumeMount
		env   []corev1.EnvVar
		want  specs.Mount
		isErr func(error) bool
		msg   string
	}{
		{name: "read-write", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/scratch"},
			want: bind(scratch, "/scratch", "rbind", "rw", "rprivate")},
		{name: "readOnly", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/scratch", ReadOnly: true},
			want: bind(scratch, "/scratch", "rbind", "ro", "rprivate")},
		{name: "configMap always read-only", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/etc/app"},
			want: bind(dirs["cfg"], "/etc/app", "rbind", "ro", "rprivate")},
		{name: "HostToContainer", vm: corev1.VolumeMount{Name: "hostdir", MountPath: "/h", MountPropagation: propagation(corev1.MountPropagationHostToContainer)},
			want: bind(hostDir, "/h", "rbind", "rw", "rslave")},
		{name: "Bidirectional", vm: corev1.VolumeMount{Name: "hostdir", MountPath: "/h", MountPropagation: propagation(corev1.MountPropagationBidirectional)},
			want: bind(hostDir, "/h", "rbind", "rw", "rshared")},
		{name: "None", vm: corev1.VolumeMount{Name: "hostdir", MountPath: "/h", MountPropagation: propagation(corev1.MountPropagationNone)},
			want: bind(hostDir, "/h", "rbind", "rw", "rprivate")},
		{name: "recursive read-only", vm: corev1.VolumeMount{Name: "hostdir", MountPath: "/h", ReadOnly: true, RecursiveReadOnly: ptr(corev1.RecursiveReadOnlyEnabled)},
			want: bind(hostDir, "/h", "rbind", "ro", "rprivate", "rro")},
		{name: "bind mount options", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/s", BindMountOptions: []string{"noexec", "nosuid"}},
			want: bind(scratch, "/s", "rbind", "rw", "rprivate", "noexec", "nosuid")},
		{name: "hostPath file", vm: corev1.VolumeMount{Name: "hostfile", MountPath: "/f"},
			want: bind(hostFile, "/f", "rbind", "rw", "rprivate")},
		{name: "subPath", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/db", SubPath: "data/db"},
			want: bind(filepath.Join(scratch, "data/db"), "/db", "rbind", "rw", "rprivate")},
		{name: "subPath through a symlink inside", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/db", SubPath: "inside/db"},
			want: bind(filepath.Join(scratch, "data/db"), "/db", "rbind", "rw", "rprivate")},
		{name: "missing subPath is created", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/n", SubPath: "new/dir"},
			want: bind(filepath.Join(scratch, "new/dir"), "/n", "rbind", "rw", "rprivate")},
		{name: "configMap key", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/app.conf", SubPath: "app.conf"},
			want: bind(filepath.Join(cfgVersion, "app.conf"), "/app.conf", "rbind", "ro", "rprivate")},
		{name: "subPathExpr", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/logs", SubPathExpr: "logs/$(NODE)/$(POD)-$(SUFFIX)"},
			env: []corev1.EnvVar{
				{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
				{Name: "BASE", Value: "x"},
				{Name: "SUFFIX", Value: "$(BASE)1"},
			},
			want: bind(filepath.Join(scratch, "logs/edge-7/web-x1"), "/logs", "rbind", "rw", "rprivate")},

		{name: "volume not set up", vm: corev1.VolumeMount{Name: "ghost", MountPath: "/g"},
			isErr: errdefs.IsNotFound, msg: `volume "ghost" is not set up`},
		{name: "subPath with ..", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "data/../../x"},
			isErr: errdefs.IsInvalidArgument, msg: "must not contain '..'"},
		{name: "symlink to an absolute path outside", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "abs-escape"},
			isErr: errdefs.IsInvalidArgument, msg: `subPath "abs-escape" resolves to /etc, outside the volume`},
		{name: "relative symlink leading outside", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "rel-escape/etc"},
			isErr: errdefs.IsInvalidArgument, msg: "outside the volume"},
		{name: "missing path below a symlink leading outside", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "abs-escape/feather-created"},
			isErr: errdefs.IsInvalidArgument, msg: "resolves to /etc, outside the volume"},
		{name: "missing path below a dangling symlink leading outside", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "dangling/x"},
			isErr: func(err error) bool { return err != nil }, msg: "create subPath"},
		{name: "absolute subPath", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "/etc"},
			isErr: errdefs.IsInvalidArgument, msg: "must be relative"},
		{name: "subPathExpr expanding to ..", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(UP)/x"},
			env:   []corev1.EnvVar{{Name: "UP", Value: ".."}},
			isErr: errdefs.IsInvalidArgument, msg: "must not contain '..'"},
		{name: "subPathExpr from a configMap", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(FROM_CM)"},
			env: []corev1.EnvVar{{Name: "FROM_CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "k"}}}},
			isErr: errdefs.IsInvalidArgument, msg: "$(FROM_CM): it comes from a configMap"},
		{name: "subPathExpr with an unknown variable", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(NOPE)"},
			isErr: errdefs.IsInvalidArgument, msg: "$(NOPE): the container has no such env entry"},
		{name: "subPath and subPathExpr", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "a", SubPathExpr: "b"},
			isErr: errdefs.IsInvalidArgument, msg: "not both"},
		{name: "subPath of a file volume", vm: corev1.VolumeMount{Name: "hostfile", MountPath: "/x", SubPath: "a"},
			isErr: errdefs.IsInvalidArgument, msg: "the volume is not a directory"},
		{name: "missing configMap key", vm: corev1.VolumeMount{Name: "cfg", MountPath: "/x", SubPath: "absent.conf"},
			isErr: errdefs.IsNotFound, msg: `subPath "absent.conf" does not exist`},
		{name: "unknown propagation", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", MountPropagation: propagation("Sideways")},
			isErr: errdefs.IsInvalidArgument, msg: "mountPropagation"},
		{name: "recursive read-only needs readOnly", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", RecursiveReadOnly: ptr(corev1.RecursiveReadOnlyEnabled)},
			isErr: errdefs.IsInvalidArgument, msg: "needs readOnly"},
		{name: "bad bind mount option", vm: corev1.VolumeMount{Name: "scratch", MountPath: "/x", BindMountOptions: []string{"suid"}},
			isErr: errdefs.IsInvalidArgument, msg: `bindMountOption "suid"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &corev1.Container{Name: "app", Env: tc.env, VolumeMounts: []corev1.VolumeMount{tc.vm}}
			got, err := Mounts(pod, c, dirs)
			if tc.isErr != nil {
				if err == nil || !tc.isErr(err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Mounts: %v; want an error of the right kind containing %q", err, tc.msg)
				}
				if !strings.HasPrefix(err.Error(), `container "app": volumeMount "`+tc.vm.Name+`"`) {
					t.Errorf("error %q does not name the container and mount", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mounts: %v", err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Fatalf("Mounts = %+v\nwant   %+v", got, tc.want)
			}
			if !strings.HasPrefix(got[0].Source, dirs[tc.vm.Name]) {
				t.Fatalf("source %s is outside the volume %s", got[0].Source, dirs[tc.vm.Name])
			}
			if _, err := os.Stat(got[0].Source); err != nil {
				t.Fatalf("source does not exist: %v", err)
			}
		})
	}
	for _, p := range []string{filepath.Join(scratch, "new"), filepath.Join(scratch, "new/dir")} {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
			t.Fatalf("subPath directory %s created as %v (%v); want a directory with the volume's mode 0777", p, fi, err)
		}
	}
	// The escape attempts created nothing outside the volume.
	for _, p := range []string{"/etc/feather-created", outside} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists after an escape attempt: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(scratch, "absent.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing configMap key was created: %v", err)
	}
}

func TestMountsOrderAndMany(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	pod := newPod("uid-order")
	c := &corev1.Container{Name: "app", VolumeMounts: []corev1.VolumeMount{
		{Name: "b", MountPath: "/b"}, {Name: "a", MountPath: "/a"}, {Name: "b", MountPath: "/b2", ReadOnly: true},
	}}
	got, err := Mounts(pod, c, map[string]string{"a": dirA, "b": dirB})
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.Mount{
		{Destination: "/b", Type: "bind", Source: dirB, Options: []string{"rbind", "rw", "rprivate"}},
		{Destination: "/a", Type: "bind", Source: dirA, Options: []string{"rbind", "rw", "rprivate"}},
		{Destination: "/b2", Type: "bind", Source: dirB, Options: []string{"rbind", "ro", "rprivate"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Mounts = %+v\nwant %+v", got, want)
	}
	if got, err := Mounts(pod, &corev1.Container{Name: "bare"}, nil); err != nil || len(got) != 0 {
		t.Fatalf("no volumeMounts: %v, %v", got, err)
	}
}
