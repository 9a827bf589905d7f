package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/feather-edge/feather/kubelet/pods"
	"github.com/feather-edge/feather/test/harness"
)

// TestAgentImageVolume follows the conformance spec "[sig-node] ImageVolume
// should succeed with pod and pull policy of Always": an image volume is
// pulled, mounted read-only (whole and by subPath) into a container pod; a
// bad reference makes the container wait with ErrImagePull or
// ImagePullBackOff; on deletion the view snapshots and leases go (the mounts
// are checked by TestMain's leak check).
func TestAgentImageVolume(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })

	host, _, _ := strings.Cut(c.busybox, "/")
	ref := host + "/feather/kitten:test"
	tarball := filepath.Join(t.TempDir(), "kitten.oci.tar")
	// The stand-in of the conformance spec's kitten image (data.json naming
	// kitten.jpg, an /etc/os-release), which needs Alpine to build.
	if err := harness.WriteImage(tarball, "docker.io/feather/kitten:test", ocispec.ImageConfig{}, []string{"etc/"}, []harness.File{
		{Name: "data.json", Mode: 0o644, Data: []byte(`{"image":"kitten.jpg"}` + "\n")},
		{Name: "etc/os-release", Mode: 0o644, Data: []byte("NAME=\"Alpine Linux\"\n")},
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.ctrd.Push(ctx, tarball, "docker.io/feather/kitten:test", ref); err != nil {
		t.Fatal(err)
	}

	good := newPod("imgvol", corev1.RestartPolicyAlways, corev1.Container{Name: "test-container", Image: c.busybox,
		Command: sh("cat /volume/data.json /etc-img/os-release; touch /volume/x 2>/dev/null && echo writable || echo read-only; " +
			"trap 'exit 0' TERM; while true; do sleep 0.2; done"),
		VolumeMounts: []corev1.VolumeMount{{Name: "volume", MountPath: "/volume"}, {Name: "volume", MountPath: "/etc-img", SubPath: "etc"}}})
	good.Spec.Volumes = []corev1.Volume{{Name: "volume", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: ref, PullPolicy: corev1.PullAlways}}}}
	bad := newPod("imgvol-bad", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("sleep 3600"),
		VolumeMounts: []corev1.VolumeMount{{Name: "volume", MountPath: "/volume"}}})
	bad.Spec.Volumes = []corev1.Volume{{Name: "volume", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: host + "/feather/no-such-image:1"}}}}
	c.create(ctx, t, good, bad)

	c.waitPod(t, "imgvol", 2*time.Minute, phase(corev1.PodRunning))
	var out string
	waitFor(t, "imgvol's log", time.Minute, func(ctx context.Context) (bool, error) {
		var err error
		out, err = c.logs(ctx, "imgvol", &corev1.PodLogOptions{})
		return err == nil && strings.Contains(out, "read-only") || strings.Contains(out, "writable"), nil
	}, &out)
	for _, want := range []string{"kitten.jpg", "Alpine Linux", "read-only"} {
		if !strings.Contains(out, want) {
			t.Errorf("imgvol's log %q lacks %q", out, want)
		}
	}
	c.waitPod(t, "imgvol-bad", 2*time.Minute, func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				return true
			}
		}
		return false
	})

	cd := namespaces.WithNamespace(ctx, agentNS)
	count := func() (n int) {
		_ = c.ctrd.Client().SnapshotService("overlayfs").Walk(cd, func(context.Context, snapshots.Info) error { n++; return nil },
			fmt.Sprintf("labels.%q", pods.LabelPodUID))
		ls, _ := c.ctrd.Client().LeasesService().List(cd, fmt.Sprintf("labels.%q", pods.LabelPodUID))
		return n + len(ls)
	}
	if n := count(); n != 2 {
		t.Errorf("%d image-volume snapshots and leases while imgvol runs, want 2 (one view, one lease)", n)
	}
	c.deleteAndTime(ctx, t, "imgvol")
	c.deleteAndTime(ctx, t, "imgvol-bad")
	if n := count(); n != 0 {
		t.Errorf("%d image-volume snapshots and leases left after the pods were deleted", n)
	}
}
