package pods

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// plainVolumes is a Volumes without the ImageMounter capability.
type plainVolumes struct{}

func (plainVolumes) Setup(context.Context, *corev1.Pod) (map[string]string, error) { return nil, nil }
func (plainVolumes) Teardown(context.Context, types.UID) error                     { return nil }
func (plainVolumes) Mounts(*corev1.Pod, *corev1.Container, map[string]string) ([]specs.Mount, error) {
	return nil, nil
}
func (plainVolumes) Refresh(context.Context, *corev1.Pod) (time.Time, error) { return time.Time{}, nil }
func (plainVolumes) Orphans(map[types.UID]bool) ([]types.UID, error)         { return nil, nil }

// mounterVolumes has the ImageMounter capability; it is never reached in these tests.
type mounterVolumes struct{ plainVolumes }

func (mounterVolumes) MountImage(string, []mount.Mount) error { return errors.New("not expected") }

// TestImageVolumesRefusals covers what imageVolumes decides before it pulls: containers that mount no image
// volume are left alone, and a volume it cannot serve makes the container wait with kubelet's reason.
func TestImageVolumesRefusals(t *testing.T) {
	vol := func(ref string) corev1.Volume {
		return corev1.Volume{Name: "img", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: ref}}}
	}
	mountImg := []corev1.VolumeMount{{Name: "img", MountPath: "/img"}}
	for _, tc := range []struct {
		name   string
		vols   []corev1.Volume
		mounts []corev1.VolumeMount
		vs     Volumes
		reason string // "" for no error
	}{
		{"no image volume", []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			[]corev1.VolumeMount{{Name: "e", MountPath: "/e"}}, plainVolumes{}, ""},
		{"image volume not mounted by this container", []corev1.Volume{vol("registry.example/x:1")}, nil, plainVolumes{}, ""},
		{"volumes that cannot mount images", []corev1.Volume{vol("registry.example/x:1")}, mountImg, plainVolumes{}, "CreateContainerError"},
		{"empty reference", []corev1.Volume{vol("")}, mountImg, mounterVolumes{}, "InvalidImageName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &worker{p: &Provider{volumes: tc.vs}, mounts: map[string]string{"img": "/state/img", "e": "/state/e"}}
			pod := &corev1.Pod{Spec: corev1.PodSpec{Volumes: tc.vols}}
			err := w.imageVolumes(context.Background(), pod, &corev1.Container{Name: "c", VolumeMounts: tc.mounts})
			var we *waitErr
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("err %v, want none", err)
			case tc.reason != "" && (!errors.As(err, &we) || we.reason != tc.reason):
				t.Fatalf("err %v, want a wait with reason %s", err, tc.reason)
			}
		})
	}
}

func TestImageVolumeNames(t *testing.T) {
	uid := types.UID("6f1c2d3e-aaaa-bbbb-cccc-000000000001")
	if got, want := imageVolumeKey(uid, "data"), "feather-imagevol/"+string(uid)+"/data"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
	if got, want := imageVolumeLease(uid), "feather-imagevol-"+string(uid); got != want {
		t.Errorf("lease %q, want %q", got, want)
	}
}
