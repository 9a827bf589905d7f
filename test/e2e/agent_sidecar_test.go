package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentSidecars runs sidecar init containers (restartPolicy Always,
// KEP-753) in container pods: started in order and gated on their startup
// probe, restarted when they exit while the main container runs, counted for
// readiness and not for the phase, and stopped after the main container on
// deletion, last first, each after its preStop hook.
func TestAgentSidecars(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })
	always := ptrTo(corev1.ContainerRestartPolicyAlways)
	work := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	vols := []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	loop := "trap 'exit 0' TERM; while true; do sleep 0.2; done"

	// A job: the sidecar is up (its startup probe passed) before the init
	// container runs, which fails the pod (restartPolicy Never) otherwise;
	// the pod Succeeds when its main container does, the sidecar killed.
	job := newPod("sidecar-job", corev1.RestartPolicyNever, corev1.Container{Name: "main", Image: c.busybox, VolumeMounts: work,
		Command: sh("test -f /work/up && test -f /work/init && echo main done")})
	job.Spec.Volumes = vols
	job.Spec.InitContainers = []corev1.Container{
		{Name: "side", Image: c.busybox, RestartPolicy: always, VolumeMounts: work,
			Command:      sh("sleep 2; touch /work/up; " + loop),
			StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: sh("test -f /work/up")}}, PeriodSeconds: 1}},
		{Name: "init", Image: c.busybox, VolumeMounts: work, Command: sh("test -f /work/up && touch /work/init")},
	}

	// A service: the first sidecar crashes once after the main container
	// started and is restarted; the second is not ready until the main
	// container says so, and the pod with it.
	svc := newPod("sidecar-svc", corev1.RestartPolicyAlways, corev1.Container{Name: "main", Image: c.busybox, VolumeMounts: work,
		Command:   sh("sleep 6; touch /work/ready; " + loop),
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 2}}}})
	svc.Spec.Volumes = vols
	svc.Spec.TerminationGracePeriodSeconds = ptrTo(int64(30))
	svc.Spec.InitContainers = []corev1.Container{
		{Name: "s1", Image: c.busybox, RestartPolicy: always, VolumeMounts: work,
			Command: sh("if [ ! -f /work/crashed ]; then touch /work/crashed; sleep 3; exit 1; fi; " + loop)},
		{Name: "s2", Image: c.busybox, RestartPolicy: always, VolumeMounts: work, Command: sh(loop),
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: sh("test -f /work/ready")}}, PeriodSeconds: 1},
			Lifecycle:      &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 2}}}},
	}
	c.create(ctx, t, job, svc)

	p := c.waitPod(t, "sidecar-job", 2*time.Minute, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if p.Status.Phase != corev1.PodSucceeded {
		t.Errorf("sidecar-job: phase %s, want Succeeded: %+v", p.Status.Phase, p.Status)
	}
	if out, err := c.logs(ctx, "sidecar-job", &corev1.PodLogOptions{Container: "main"}); err != nil || out != "main done\n" {
		t.Errorf("sidecar-job logs %q, %v", out, err)
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.State.Terminated == nil {
			t.Errorf("sidecar-job: init container %s not terminated: %+v", cs.Name, cs.State)
		}
	}

	// Running but not Ready while s2's readiness probe fails.
	unready := func(p *corev1.Pod) bool {
		for _, cd := range p.Status.Conditions {
			if cd.Type == corev1.PodReady && cd.Status == corev1.ConditionFalse && p.Status.Phase == corev1.PodRunning {
				for _, cs := range p.Status.ContainerStatuses {
					if cs.Name == "main" && cs.Ready {
						return true
					}
				}
			}
		}
		return false
	}
	c.waitPod(t, "sidecar-svc", 2*time.Minute, unready)
	p = c.waitPod(t, "sidecar-svc", 2*time.Minute, func(p *corev1.Pod) bool {
		ready := false
		for _, cd := range p.Status.Conditions {
			ready = ready || (cd.Type == corev1.PodReady && cd.Status == corev1.ConditionTrue)
		}
		s1 := p.Status.InitContainerStatuses[0]
		return ready && s1.RestartCount >= 1 && s1.State.Running != nil
	})
	if s2 := p.Status.InitContainerStatuses[1]; !s2.Ready || s2.State.Running == nil {
		t.Errorf("s2: %+v", s2)
	}

	// Deletion: main (preStop 2 s), then s2 (preStop 2 s), then s1.
	d := c.deleteAndTime(ctx, t, "sidecar-svc")
	t.Logf("deleting sidecar-svc took %s", d.Round(100*time.Millisecond))
	l, err := c.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=sidecar-svc,reason=Killing"})
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]time.Time{}
	for _, e := range l.Items {
		at[e.Message] = e.FirstTimestamp.Time
	}
	m, s2, s1 := at["Stopping container main"], at["Stopping container s2"], at["Stopping container s1"]
	if m.IsZero() || s2.IsZero() || s1.IsZero() || s2.Sub(m) < time.Second || s1.Sub(s2) < time.Second {
		t.Errorf("Killing events main %v, s2 %v, s1 %v: want main, then s2 2 s later, then s1 2 s later", m, s2, s1)
	}
	if d < 4*time.Second || d > 20*time.Second {
		t.Errorf("deleting sidecar-svc took %s, want 4…20 s", d)
	}
}

// TestAgentSidecarDeadline: when activeDeadlineSeconds passes, the pod is
// Failed with DeadlineExceeded and its sidecar init container is killed
// with its main container (after it, as on deletion), not left running nor
// restarted.
func TestAgentSidecarDeadline(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })
	loop := "trap 'exit 0' TERM; while true; do sleep 0.2; done"
	p := newPod("sidecar-deadline", corev1.RestartPolicyAlways, corev1.Container{Name: "main", Image: c.busybox, Command: sh(loop)})
	p.Spec.ActiveDeadlineSeconds = ptrTo(int64(8))
	p.Spec.InitContainers = []corev1.Container{{Name: "side", Image: c.busybox, RestartPolicy: ptrTo(corev1.ContainerRestartPolicyAlways), Command: sh(loop)}}
	c.create(ctx, t, p)

	got := c.waitPod(t, "sidecar-deadline", 2*time.Minute, phase(corev1.PodFailed))
	if got.Status.Reason != "DeadlineExceeded" {
		t.Errorf("reason %q, want DeadlineExceeded", got.Status.Reason)
	}
	for _, cs := range append(got.Status.InitContainerStatuses, got.Status.ContainerStatuses...) {
		if cs.State.Terminated == nil {
			t.Errorf("container %s not terminated when the pod failed: %+v", cs.Name, cs.State)
		}
	}
	// Nothing of it runs: every task of the pod has exited (the agent
	// deletes a task once it has recorded its exit).
	cs, err := c.ctrd.Client().Containers(namespaces.WithNamespace(ctx, agentNS))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range cs {
		if task, err := x.Task(namespaces.WithNamespace(ctx, agentNS), nil); err == nil {
			if st, err := task.Status(namespaces.WithNamespace(ctx, agentNS)); err == nil && st.Status == client.Running {
				t.Errorf("container %s still runs after the deadline", x.ID())
			}
		}
	}
}
