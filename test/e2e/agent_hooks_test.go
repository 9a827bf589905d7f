package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// deleteAndTime deletes pod name and returns how long until it is gone
// from the API.
func (c *cluster) deleteAndTime(ctx context.Context, t *testing.T, name string) time.Duration {
	t.Helper()
	start := time.Now()
	if err := c.kube.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod "+name+" gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := c.kube.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	return time.Since(start)
}

func execHook(cmd string) *corev1.LifecycleHandler {
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: sh(cmd)}}
}

// TestAgentHooks runs postStart and preStop hooks (exec, httpGet, sleep) on
// containers and a unikernel and checks kubelet's order against the grace
// period and its events; deletion ends as soon as the containers have
// exited.
func TestAgentHooks(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })
	grace := func(p *corev1.Pod, s int64) *corev1.Pod { p.Spec.TerminationGracePeriodSeconds = &s; return p }

	// postStart by exec runs before the pod's next container starts and
	// sees the container's filesystem; the main process waits for its file.
	c.create(ctx, t, newPod("poststart", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox,
		Command:   sh("while [ ! -f /tmp/hook ]; do sleep 0.2; done; cat /tmp/hook"),
		Lifecycle: &corev1.Lifecycle{PostStart: execHook("echo from postStart > /tmp/hook")}}))
	// A failing postStart: event, the container killed and run again.
	c.create(ctx, t, newPod("poststart-fail", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("exec sleep 3600"), Lifecycle: &corev1.Lifecycle{PostStart: execHook("echo nope; exit 3")}}))
	// A container that exits on SIGTERM: deleted at once despite 60 s grace.
	c.create(ctx, t, grace(newPod("quick", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("trap 'exit 0' TERM; while true; do sleep 0.2; done")}), 60))
	// preStop sleep 3 s, then SIGTERM.
	c.create(ctx, t, grace(newPod("prestop-sleep", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command:   sh("trap 'exit 0' TERM; while true; do sleep 0.2; done"),
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 3}}}}), 60))
	// A preStop hook hanging past a 4 s grace period.
	c.create(ctx, t, grace(newPod("prestop-hang", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("exec sleep 3600"), Lifecycle: &corev1.Lifecycle{PreStop: execHook("sleep 3600")}}), 4))
	// preStop by httpGet on a unikernel (its /httpd at the pod IP), and on
	// a container, against a closed port: FailedPreStopHook.
	uk := grace(newPod("prestop-uk", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt(8080)}}}}), 20)
	uk.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, uk, grace(newPod("prestop-http-closed", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command:   sh("trap 'exit 0' TERM; while true; do sleep 0.2; done"),
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/stop", Port: intstr.FromInt(8081)}}}}), 30))

	c.waitPod(t, "poststart", time.Minute, phase(corev1.PodSucceeded))
	if out, err := c.logs(ctx, "poststart", &corev1.PodLogOptions{}); err != nil || out != "from postStart\n" {
		t.Errorf("logs %q, %v", out, err)
	}

	msg := c.waitEvent(t, "poststart-fail", "FailedPostStartHook", "Exec lifecycle hook", time.Minute)
	if !strings.Contains(msg, `for Container "c" in Pod "poststart-fail_default(`) || !strings.Contains(msg, "exited with 3") {
		t.Errorf("FailedPostStartHook %q", msg)
	}
	c.waitPod(t, "poststart-fail", time.Minute, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})

	for _, name := range []string{"quick", "prestop-sleep", "prestop-hang", "prestop-uk", "prestop-http-closed"} {
		c.waitPod(t, name, 2*time.Minute, phase(corev1.PodRunning))
	}
	// The unikernel's server is up before its preStop hook is asked of it.
	waitFor(t, "prestop-uk serving", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := httpGet(ctx, "http://"+c.pod(ctx, t, "prestop-uk").Status.PodIP+":8080/")
		return err == nil, nil
	})
	for _, tc := range []struct {
		name     string
		min, max time.Duration
	}{
		{"quick", 0, 10 * time.Second},
		{"prestop-sleep", 3 * time.Second, 15 * time.Second},
		{"prestop-hang", 4 * time.Second, 20 * time.Second}, // 4 s hook + 2 s minimum grace
		{"prestop-uk", 0, 18 * time.Second},
		{"prestop-http-closed", 0, 15 * time.Second},
	} {
		d := c.deleteAndTime(ctx, t, tc.name)
		t.Logf("deleting %s took %s", tc.name, d.Round(100*time.Millisecond))
		if d < tc.min || d > tc.max {
			t.Errorf("deleting %s took %s, want %s…%s", tc.name, d.Round(100*time.Millisecond), tc.min, tc.max)
		}
	}
	c.waitEvent(t, "prestop-hang", "FailedPreStopHook", "did not complete within the grace period", 10*time.Second)
	c.waitEvent(t, "prestop-http-closed", "FailedPreStopHook", "HTTP lifecycle hook (/stop)", 10*time.Second)
	if evs := c.events(ctx, t, "prestop-uk", "FailedPreStopHook"); len(evs) != 0 {
		t.Errorf("prestop-uk: %v", evs)
	}
	if evs := c.events(ctx, t, "prestop-sleep", "FailedPreStopHook"); len(evs) != 0 {
		t.Errorf("prestop-sleep: %v", evs)
	}
}
