package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func execProbe(period int32, cmd ...string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}}, PeriodSeconds: period}
}

func httpProbe(period int32, port int) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt(port)}}, PeriodSeconds: period}
}

func tcpProbe(period int32, port int) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}, PeriodSeconds: period}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// serve is a busybox script serving HTTP on 8080 from /www.
const serve = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"

// TestAgentProbes runs pods with readiness, liveness and startup probes of
// every kind, passing and failing, as containers and as unikernels, and
// checks what Kubernetes shows: ready, the pod's conditions, restarts,
// kubelet's Unhealthy and Killing events; an exec probe on a unikernel is
// refused with the reason.
func TestAgentProbes(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })

	// Readiness by exec: not ready until the file exists, ready after,
	// unready again once it is gone.
	c.create(ctx, t, newPod("ready-exec", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command:        sh("sleep 4; touch /tmp/ready; sleep 8; rm /tmp/ready; exec sleep 3600"),
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}}, PeriodSeconds: 1, FailureThreshold: 1}}))
	// Readiness by httpGet and tcpSocket on a container and a unikernel.
	c.create(ctx, t, newPod("ready-http", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh(serve),
		ReadinessProbe: httpProbe(1, 8080), LivenessProbe: tcpProbe(1, 8080)}))
	uk := newPod("ready-uk", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"},
		ReadinessProbe: httpProbe(1, 8080), LivenessProbe: tcpProbe(2, 8080), StartupProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(8080)}}, PeriodSeconds: 1, FailureThreshold: 60}})
	uk.Spec.RuntimeClassName = ptrTo("osv")
	// Bad input: a readiness probe on a closed port, a liveness exec probe
	// of a binary that does not exist, a liveness probe timing out.
	c.create(ctx, t, uk,
		newPod("closed-port", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("exec sleep 3600"),
			ReadinessProbe: httpProbe(1, 8081)}),
		newPod("no-binary", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("trap 'exit 0' TERM; while true; do sleep 1; done"),
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/no/such/probe"}}}, PeriodSeconds: 1, FailureThreshold: 2}}),
		newPod("timeout", corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox, Command: sh("exec sleep 3600"),
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "10"}}},
				PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 1}}))
	vm := newPod("uk-exec", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"},
		LivenessProbe: execProbe(1, "/hello")})
	vm.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, vm)

	t.Run("readiness exec", func(t *testing.T) {
		t.Parallel()
		p := c.waitPod(t, "ready-exec", time.Minute, phase(corev1.PodRunning))
		if podReady(p) && time.Since(p.Status.StartTime.Time) < 3*time.Second {
			t.Errorf("ready before its probe passed: %+v", p.Status)
		}
		c.waitPod(t, "ready-exec", 30*time.Second, podReady)
		p = c.waitPod(t, "ready-exec", 30*time.Second, func(p *corev1.Pod) bool { return !podReady(p) })
		if st := p.Status.ContainerStatuses[0]; st.Ready || st.State.Running == nil || st.RestartCount != 0 {
			t.Errorf("after the file went: %+v", st)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.ContainersReady && cond.Status != corev1.ConditionFalse {
				t.Errorf("ContainersReady %s", cond.Status)
			}
		}
		c.waitEvent(t, "ready-exec", "Unhealthy", "Readiness probe failed", 10*time.Second)
	})
	t.Run("readiness http, container and unikernel", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"ready-http", "ready-uk"} {
			p := c.waitPod(t, name, 2*time.Minute, podReady)
			st := p.Status.ContainerStatuses[0]
			if !st.Ready || st.Started == nil || !*st.Started || st.RestartCount != 0 {
				t.Errorf("%s: %+v", name, st)
			}
		}
	})
	t.Run("closed port", func(t *testing.T) {
		t.Parallel()
		msg := c.waitEvent(t, "closed-port", "Unhealthy", "Readiness probe failed:", time.Minute)
		if !strings.Contains(msg, "connection refused") {
			t.Errorf("event %q", msg)
		}
		p := c.pod(ctx, t, "closed-port")
		if podReady(p) || p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].Ready {
			t.Errorf("status %+v", p.Status)
		}
	})
	t.Run("missing binary restarts", func(t *testing.T) {
		t.Parallel()
		c.waitPod(t, "no-binary", 2*time.Minute, func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
		})
		c.waitEvent(t, "no-binary", "Unhealthy", "Liveness probe errored", 10*time.Second)
		c.waitEvent(t, "no-binary", "Killing", "Container c failed liveness probe, will be restarted", 10*time.Second)
	})
	t.Run("timeout kills, restartPolicy Never", func(t *testing.T) {
		t.Parallel()
		p := c.waitPod(t, "timeout", 2*time.Minute, phase(corev1.PodFailed))
		if st := p.Status.ContainerStatuses[0]; st.RestartCount != 0 || st.State.Terminated == nil {
			t.Errorf("status %+v", st)
		}
		c.waitEvent(t, "timeout", "Unhealthy", "timed out", 10*time.Second)
		c.waitEvent(t, "timeout", "Killing", "Container c failed liveness probe", 10*time.Second)
	})
	t.Run("exec probe on a unikernel", func(t *testing.T) {
		t.Parallel()
		p := c.waitPod(t, "uk-exec", time.Minute, func(p *corev1.Pod) bool {
			w := p.Status.ContainerStatuses
			return len(w) == 1 && w[0].State.Waiting != nil && w[0].State.Waiting.Reason == "CreateContainerConfigError"
		})
		if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "no shell to exec into") {
			t.Errorf("waiting message %q", msg)
		}
		c.waitEvent(t, "uk-exec", "Failed", "Liveness probe uses exec", 10*time.Second)
	})
}
