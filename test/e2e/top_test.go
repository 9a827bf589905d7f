package e2e

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/feather-edge/feather/test/harness"
)

// TestAgentTop runs metrics-server against the agent, as `make up` does:
// `kubectl top pod` shows a container and a unikernel each burning a core,
// `kubectl top node` the node, and metrics-server logs no scrape error.
func TestAgentTop(t *testing.T) {
	env := harness.New(t)
	hc := env.StartCluster(harness.ClusterOptions{Metrics: true})
	c := &cluster{env: env, cp: hc.ControlPlane, ctrd: hc.Containerd, agent: hc.Agent, kube: hc.Kube,
		busybox: hc.Busybox, unikernel: hc.Unikernel}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	kubectl := harness.RequiresBin(t, "kubectl")

	burn := newPod("burn", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("while :; do :; done")})
	uk := newPod("uk-burn", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/burn"}})
	uk.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, burn, uk)
	for _, name := range []string{"burn", "uk-burn"} {
		c.waitPod(t, name, 3*time.Minute, ready)
	}

	top := func(args ...string) (map[string][2]string, string) {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"top", "--no-headers"}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.cp.AdminKubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, string(out)
		}
		rows := map[string][2]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) >= 3 {
				rows[f[0]] = [2]string{f[1], f[len(f)-2]} // NAME CPU [CPU%] MEMORY [MEMORY%]
				if len(f) == 3 {
					rows[f[0]] = [2]string{f[1], f[2]}
				}
			}
		}
		return rows, string(out)
	}
	// metrics-server needs two scrapes (15 s apart) for a rate.
	var last string
	var pods map[string][2]string
	waitFor(t, "kubectl top pod to show both pods", 2*time.Minute, func(context.Context) (bool, error) {
		pods, last = top("pod")
		_, a := pods["burn"]
		_, b := pods["uk-burn"]
		return a && b, nil
	}, &last)
	t.Logf("kubectl top pod:\n%s", last)
	for _, name := range []string{"burn", "uk-burn"} {
		m, err := strconv.Atoi(strings.TrimSuffix(pods[name][0], "m"))
		if err != nil {
			t.Errorf("kubectl top pod %s: CPU %q", name, pods[name][0])
			continue
		}
		// A core, on a machine that has one to give (TestAgentStats checks
		// the figure against /proc).
		if m < 500 || m > 1100 {
			t.Errorf("kubectl top pod %s: %dm, want about a core (900–1100m on an idle machine)", name, m)
		}
	}
	var nodes map[string][2]string
	waitFor(t, "kubectl top node", time.Minute, func(context.Context) (bool, error) {
		nodes, last = top("node")
		_, ok := nodes[c.agent.Name]
		return ok, nil
	}, &last)
	t.Logf("kubectl top node:\n%s", last)
	for _, line := range strings.Split(hc.MetricsServer.Log(500), "\n") {
		if strings.Contains(line, "Failed to scrape") || strings.Contains(line, "scrape error") || (len(line) > 1 && line[0] == 'E' && line[1] >= '0' && line[1] <= '9') {
			t.Errorf("metrics-server: %s", line)
		}
	}
}
