package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/feather-edge/feather/test/harness"
)

// TestAgentTop runs metrics-server against the agent, as `make up` does:
// `kubectl top pod` shows a container and a unikernel each burning a core,
// `kubectl top node` the node, a HorizontalPodAutoscaler on CPU scales a
// Deployment of unikernels, and metrics-server logs no scrape error.
func TestAgentTop(t *testing.T) {
	env := harness.New(t)
	hc := env.StartCluster(harness.ClusterOptions{Metrics: true})
	c := &cluster{env: env, cp: hc.ControlPlane, ctrd: hc.Containerd, agent: hc.Agent, kube: hc.Kube,
		busybox: hc.Busybox, unikernel: hc.Unikernel}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(func() {
		_ = c.kube.AutoscalingV2().HorizontalPodAutoscalers("default").Delete(context.Background(), "uk-hpa", metav1.DeleteOptions{})
		deleteAll(ctx, t, c)
		cancel()
	})
	kubectl := harness.RequiresBin(t, "kubectl")

	burn := newPod("burn", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("while :; do :; done")})
	uk := newPod("uk-burn", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/burn"}})
	uk.Spec.RuntimeClassName = ptrTo("osv")
	top := func(args ...string) (map[string][2]string, string) {
		cmd := exec.CommandContext(ctx, kubectl, append(append([]string{"top"}, args...), "--no-headers")...)
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
	// One burner alone first: a container burning a core shows 900–1100m
	// in `kubectl top pod` when the machine has that core to give; on a
	// busy one, what its process got (/proc) over metrics-server's window.
	c.create(ctx, t, burn)
	c.waitPod(t, "burn", 3*time.Minute, ready)
	pid := c.taskPid(ctx, t, c.pod(ctx, t, "burn"))
	// metrics-server needs two scrapes (15 s apart) for a rate.
	var last string
	var pods map[string][2]string
	waitFor(t, "kubectl top pod to show burn", 2*time.Minute, func(context.Context) (bool, error) {
		pods, last = top("pod")
		_, ok := pods["burn"]
		return ok, nil
	}, &last)
	// metrics-server's figure is the rate between its last two scrapes: the
	// process's own over the next window of that length, read at the same
	// time as the next figure.
	first := pods["burn"][0]
	cpu0, at0 := procCPU(t, pid), time.Now()
	waitFor(t, "metrics-server's next scrape of burn", time.Minute, func(context.Context) (bool, error) {
		pods, last = top("pod")
		d := time.Since(at0)
		return d > harness.MetricsResolution && (pods["burn"][0] != first || d > 2*harness.MetricsResolution), nil
	}, &last)
	procCores := (procCPU(t, pid) - cpu0) / time.Since(at0).Seconds()
	alone, err := strconv.Atoi(strings.TrimSuffix(pods["burn"][0], "m"))
	if err != nil {
		t.Fatalf("kubectl top pod burn: CPU %q", pods["burn"][0])
	}
	t.Logf("one burner alone: kubectl top pod burn %dm, its process by /proc %.0fm", alone, procCores*1000)
	if d := float64(alone)/(procCores*1000) - 1; d < -0.15 || d > 0.15 {
		t.Errorf("kubectl top pod burn %dm, its process %.0fm by /proc: more than 15%% apart", alone, procCores*1000)
	}
	if procCores >= 0.9 && (alone < 900 || alone > 1100) {
		t.Errorf("kubectl top pod burn %dm with a core to itself (%.0fm by /proc), want 900–1100m", alone, procCores*1000)
	}

	c.create(ctx, t, uk)
	c.waitPod(t, "uk-burn", 3*time.Minute, ready)
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
		// A core on an idle machine, what it gets on a busy one
		// (TestAgentStats checks the figure against /proc).
		if m < 50 || m > 1100 {
			t.Errorf("kubectl top pod %s: %dm, want up to a core (900–1100m on an idle machine)", name, m)
		}
	}
	var nodes map[string][2]string
	waitFor(t, "kubectl top node", time.Minute, func(context.Context) (bool, error) {
		nodes, last = top("node")
		_, ok := nodes[c.agent.Name]
		return ok, nil
	}, &last)
	t.Logf("kubectl top node:\n%s", last)

	// A HorizontalPodAutoscaler on CPU scales a Deployment of busy
	// unikernels (each using about a core against a request of 250m) from
	// one replica to two.
	for _, name := range []string{"burn", "uk-burn"} {
		if err := c.kube.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	spec := podTemplate(corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/burn"},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}})
	spec.RuntimeClassName = ptrTo("osv")
	if _, err := c.kube.AppsV1().Deployments("default").Create(ctx, deployment("uk-hpa", 1, spec), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = c.kube.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "uk-hpa"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "uk-hpa"},
			MinReplicas:    ptrTo(int32(1)), MaxReplicas: 2,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptrTo(int32(50))}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the HPA to scale uk-hpa to 2 replicas", 4*time.Minute, func(ctx context.Context) (bool, error) {
		h, err := c.kube.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "uk-hpa", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("%+v", h.Status)
		d, err := c.kube.AppsV1().Deployments("default").Get(ctx, "uk-hpa", metav1.GetOptions{})
		return err == nil && *d.Spec.Replicas == 2, err
	}, &last)
	t.Logf("HPA: %s", last)

	for _, line := range strings.Split(hc.MetricsServer.Log(500), "\n") {
		if strings.Contains(line, "Failed to scrape") || strings.Contains(line, "scrape error") || (len(line) > 1 && line[0] == 'E' && line[1] >= '0' && line[1] <= '9') {
			t.Errorf("metrics-server: %s", line)
		}
	}
}
