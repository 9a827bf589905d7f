package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentRestart kills the agent with SIGKILL while ten pods run (nine
// containers, one unikernel), deletes one pod meanwhile, and starts the
// agent again: the running pods keep their containers (no restart), their
// statuses stay right, and the deleted pod's containers are removed.
func TestAgentRestart(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var names []string
	for i := range 9 {
		name := fmt.Sprintf("c%d", i)
		names = append(names, name)
		c.create(ctx, t, newPod(name, corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("echo up; exec sleep 3600")}))
	}
	names = append(names, "vm")
	c.create(ctx, t, newPod("vm", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"}}))
	for _, n := range names {
		c.waitPod(t, n, 2*time.Minute, ready)
	}
	before := c.tasks(ctx, t)
	if len(before) != 10 {
		t.Fatalf("tasks before = %v", before)
	}

	c.agent.Kill()
	// Deleted while the agent is down: gone from the API at once (grace 0).
	if err := c.kube.CoreV1().Pods("default").Delete(ctx, "c0", metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))}); err != nil {
		t.Fatal(err)
	}
	if err := c.agent.Start(); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "c0's container removed", time.Minute, func(ctx context.Context) (bool, error) {
		_, ok := c.tasks(ctx, t)["c0"]
		return !ok && len(c.containers(ctx, t)) == 9, nil
	})
	after := c.tasks(ctx, t)
	for _, n := range names[1:] {
		if after[n] != before[n] {
			t.Errorf("%s: task %s before the restart, %s after", n, before[n], after[n])
		}
		p := c.pod(ctx, t, n)
		if !ready(p) || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("%s after the agent restart: %s %+v", n, p.Status.Phase, p.Status.ContainerStatuses)
		}
	}
	out, err := c.logs(ctx, "c1", &corev1.PodLogOptions{})
	if err != nil || out != "up\n" {
		t.Errorf("logs of c1 after the restart: %q, %v", out, err)
	}
	// The restarted agent still acts: a pod deleted now goes away.
	if err := c.kube.CoreV1().Pods("default").Delete(ctx, "c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c1 deleted", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := c.kube.CoreV1().Pods("default").Get(ctx, "c1", metav1.GetOptions{})
		return err != nil && len(c.containers(ctx, t)) == 8, nil
	})
	deleteAll(ctx, t, c)
}

// ready reports whether a pod runs with every container ready.
func ready(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

// tasks maps each pod name to its container's ID and task PID, from containerd.
func (c *cluster) tasks(ctx context.Context, t *testing.T) map[string]string {
	t.Helper()
	ctx = namespaces.WithNamespace(ctx, agentNS)
	cs, err := c.ctrd.Client().Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, x := range cs {
		labels, err := x.Labels(ctx)
		if err != nil {
			continue
		}
		task, err := x.Task(ctx, nil)
		if err != nil {
			continue
		}
		out[labels["feather.dev/pod-name"]] = fmt.Sprintf("%s/%d", x.ID(), task.Pid())
	}
	return out
}

// waitAgentBack waits until the agent, started again at since, has reported
// its node Ready again: from then on statuses are its new process's.
func (c *cluster) waitAgentBack(t *testing.T, since time.Time) {
	t.Helper()
	waitFor(t, "the agent back", time.Minute, func(ctx context.Context) (bool, error) {
		n, err := c.kube.CoreV1().Nodes().Get(ctx, c.agent.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue && !cond.LastHeartbeatTime.Time.Before(since.Truncate(time.Second)) {
				return true, nil
			}
		}
		return false, nil
	})
}
