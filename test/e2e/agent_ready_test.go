package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/feather-edge/feather/test/harness"
)

// TestAgentUnikernelReady: a unikernel container without a readiness probe
// is Running but not Ready while its VM boots (the test guest's Linux
// kernel takes seconds under TCG), and turns Ready once its program has
// started (the shim saw OSv's echo of its command) — not seconds before, as
// when QEMU's start counted.
func TestAgentUnikernelReady(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t.Cleanup(func() { deleteAll(context.Background(), t, c) })
	p := newPod("uk-ready", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"}})
	p.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, p)
	checkReadyAfterStart(ctx, t, c, "uk-ready", "listening on :8080")
}

// TestRealOSvReady is TestAgentUnikernelReady with the real OSv, disk
// booted (seconds of SeaBIOS and OSv's boot before the program).
func TestRealOSvReady(t *testing.T) {
	dir := harness.RealOSv(t)
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t.Cleanup(func() { deleteAll(context.Background(), t, c) })
	disk, _, err := harness.WriteRealOSvImages(ctx, dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host := strings.SplitN(c.busybox, "/", 2)[0]
	ref := host + "/feather/osv-disk:" + harness.RealOSvVersion
	if err := c.ctrd.Push(ctx, disk, harness.RealOSvDiskRef, ref); err != nil {
		t.Fatal(err)
	}
	p := newPod("osv-ready", corev1.RestartPolicyAlways, corev1.Container{Name: "main", Image: ref, Args: []string{"/minimal"}})
	p.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, p)
	checkReadyAfterStart(ctx, t, c, "osv-ready", "minimal: hello from osv")
}

// checkReadyAfterStart watches pod's one container from its creation: it
// must be seen Running and not Ready (booting), then Ready, and Ready no
// earlier than the shim saw the program start (OSv's echo of the command,
// the shim's "start" console line in containerd's log), which comes before
// the program's first line (firstLine) in the pod's log.
func checkReadyAfterStart(ctx context.Context, t *testing.T, c *cluster, pod, firstLine string) {
	t.Helper()
	var (
		sawBooting bool
		readyAt    time.Time
		last       string
	)
	waitFor(t, "pod "+pod+" Ready", 4*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := c.kube.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		now := time.Now()
		if len(p.Status.ContainerStatuses) != 1 {
			return false, nil
		}
		cs := p.Status.ContainerStatuses[0]
		last = string(p.Status.Phase) + " " + cs.String()
		switch {
		case cs.State.Running != nil && cs.Ready:
			readyAt = now
			return true, nil
		case cs.State.Running != nil:
			sawBooting = true
			if cs.Started != nil && *cs.Started {
				t.Errorf("pod %s: started before its program started: %s", pod, last)
			}
		}
		return false, nil
	}, &last)
	if !sawBooting {
		t.Errorf("pod %s: never seen Running and not Ready: Ready as soon as its VM ran", pod)
	}
	var first time.Time
	waitFor(t, "the program's first line in the log of "+pod, time.Minute, func(ctx context.Context) (bool, error) {
		out, err := c.logs(ctx, pod, &corev1.PodLogOptions{Timestamps: true})
		if err != nil {
			return false, nil
		}
		for _, l := range strings.Split(out, "\n") {
			ts, text, ok := strings.Cut(l, " ")
			if ok && strings.Contains(text, firstLine) {
				first, err = time.Parse(time.RFC3339Nano, ts)
				return err == nil, err
			}
		}
		return false, nil
	}, &last)
	// The cluster has this one VM: its shim's one start line.
	var started time.Time
	waitFor(t, "the shim's start line in containerd's log", 30*time.Second, func(context.Context) (bool, error) {
		b, err := os.ReadFile(c.ctrd.LogFile())
		if err != nil {
			return false, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.Contains(l, "kind=start") {
				continue
			}
			ts, _, _ := strings.Cut(strings.TrimPrefix(l, `time="`), `"`)
			started, err = time.Parse(time.RFC3339Nano, ts)
			return err == nil, err
		}
		return false, nil
	}, &last)
	if readyAt.Before(started) {
		t.Errorf("pod %s: Ready at %s, %s before the shim saw its program start (%s)",
			pod, readyAt.Format(time.RFC3339Nano), started.Sub(readyAt), started.Format(time.RFC3339Nano))
	}
	if first.Before(started) {
		t.Errorf("pod %s: the program's first line at %s, before the shim saw it start (%s)", pod,
			first.Format(time.RFC3339Nano), started.Format(time.RFC3339Nano))
	}
	t.Logf("pod %s: Ready %s after the shim saw its program start, %s after the program's first line",
		pod, readyAt.Sub(started), readyAt.Sub(first))
	pod2 := c.pod(ctx, t, pod)
	for _, cond := range pod2.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status != corev1.ConditionTrue {
			t.Errorf("pod %s: Ready condition %s after its container was ready", pod, cond.Status)
		}
	}
}
