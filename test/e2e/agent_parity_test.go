package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentParity checks kubelet behaviours of the pod lifecycle: a
// container that prints and exits at once keeps its whole log, and
// ephemeral containers (kubectl debug) run in their target's PID namespace,
// report a status and take exec and logs; in a pod running a unikernel
// they are refused with a reason.
func TestAgentParity(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })

	t.Run("log of a container that exits at once", func(t *testing.T) {
		t.Parallel()
		for i := range 5 {
			name := fmt.Sprintf("quick-%d", i)
			c.create(ctx, t, newPod(name, corev1.RestartPolicyNever, corev1.Container{Name: "c", Image: c.busybox,
				Command: sh("echo one; echo two; printf last")}))
		}
		for i := range 5 {
			name := fmt.Sprintf("quick-%d", i)
			c.waitPod(t, name, time.Minute, phase(corev1.PodSucceeded))
			// Right after Succeeded, as the conformance tests read it.
			if out, err := c.logs(ctx, name, &corev1.PodLogOptions{}); err != nil || out != "one\ntwo\nlast" {
				t.Errorf("%s: logs = %q, %v; want every line", name, out, err)
			}
		}
	})

	t.Run("ephemeral container", func(t *testing.T) {
		t.Parallel()
		c.create(ctx, t, newPod("debugged", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
			Command: sh("exec sleep 3600")}))
		p := c.waitPod(t, "debugged", time.Minute, phase(corev1.PodRunning))
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: c.busybox,
				Command: sh("while true; do echo polo; sleep 1; done")},
			TargetContainerName: "c"})
		if _, err := c.kube.CoreV1().Pods("default").UpdateEphemeralContainers(ctx, "debugged", p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := c.waitPod(t, "debugged", time.Minute, func(p *corev1.Pod) bool {
			st := p.Status.EphemeralContainerStatuses
			return len(st) == 1 && st[0].State.Running != nil
		})
		if got.Generation < 2 || got.Status.ObservedGeneration != got.Generation {
			t.Errorf("generation %d, observedGeneration %d", got.Generation, got.Status.ObservedGeneration)
		}
		// The target's PID namespace: its sleep is visible.
		out, err := c.kubectl(ctx, t, "exec", "debugged", "-c", "debugger", "--", "ps")
		if err != nil || !strings.Contains(out, "sleep 3600") {
			t.Errorf("ps in the debugger = %q, %v; want the target's sleep", out, err)
		}
		waitFor(t, "the debugger's log", 30*time.Second, func(ctx context.Context) (bool, error) {
			out, err := c.logs(ctx, "debugged", &corev1.PodLogOptions{Container: "debugger"})
			return err == nil && strings.Contains(out, "polo"), nil
		})
		if p := c.pod(ctx, t, "debugged"); p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("the target pod after debugging: %+v", p.Status)
		}
	})

	t.Run("ephemeral container in a unikernel pod", func(t *testing.T) {
		t.Parallel()
		c.create(ctx, t, newPod("uk-debugged", corev1.RestartPolicyAlways, corev1.Container{Name: "uk", Image: c.unikernel,
			Args: []string{"/httpd", "8080"}}))
		p := c.waitPod(t, "uk-debugged", 2*time.Minute, phase(corev1.PodRunning))
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: c.busybox, Command: sh("sleep 60")},
			TargetContainerName:      "uk"})
		if _, err := c.kube.CoreV1().Pods("default").UpdateEphemeralContainers(ctx, "uk-debugged", p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitPod(t, "uk-debugged", time.Minute, func(p *corev1.Pod) bool {
			st := p.Status.EphemeralContainerStatuses
			return len(st) == 1 && st[0].State.Waiting != nil && st[0].State.Waiting.Reason == "CreateContainerConfigError" &&
				strings.Contains(st[0].State.Waiting.Message, "unikernel")
		})
		c.waitEvent(t, "uk-debugged", "Failed", "ephemeral containers are not supported", 10*time.Second)
	})
}
