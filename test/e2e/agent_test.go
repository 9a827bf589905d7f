package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/feather-edge/feather/test/harness"
)

// agentNS is the containerd namespace the agent runs pods in.
const agentNS = "feather"

// cluster is a control plane, containerd, a registry holding the test
// images, and the agent registered as a node.
type cluster struct {
	env       *harness.Env
	cp        *harness.ControlPlane
	ctrd      *harness.Containerd
	sn        *harness.Snapshotter
	agent     *harness.Agent
	kube      kubernetes.Interface
	busybox   string // image refs in the registry
	unikernel string
}

// newCluster starts everything and creates RuntimeClass osv; agentArgs are
// extra flags for the agent.
func newCluster(t testing.TB, agentArgs ...string) *cluster {
	t.Helper()
	env := harness.New(t)
	hc := env.StartCluster(harness.ClusterOptions{Agent: harness.AgentOptions{Args: agentArgs}})
	return &cluster{env: env, cp: hc.ControlPlane, ctrd: hc.Containerd, sn: hc.Snapshotter, agent: hc.Agent, kube: hc.Kube,
		busybox: hc.Busybox, unikernel: hc.Unikernel}
}

// podTemplate is a pod spec that tolerates the agent's taint and stops fast.
func podTemplate(containers ...corev1.Container) corev1.PodSpec {
	return harness.PodSpec(containers...)
}

func ptrTo[T any](v T) *T { return &v }

func deployment(name string, replicas int32, spec corev1.PodSpec) *appsv1.Deployment {
	return harness.Deployment(name, replicas, spec)
}

// waitFor polls cond every 200 ms until it is true, fails, or timeout; the
// failure shows *last, if given: what cond saw the last time.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func(context.Context) (bool, error), last ...*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, cond); err != nil {
		if len(last) > 0 {
			t.Fatalf("waiting for %s: %v (last seen: %s)", what, err, *last[0])
		}
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// pods lists the pods with label app=name.
func (c *cluster) pods(ctx context.Context, t *testing.T, app string) []corev1.Pod {
	t.Helper()
	l, err := c.kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// logs returns `kubectl logs` of a container, through the API server and
// the agent's kubelet API.
func (c *cluster) logs(ctx context.Context, pod string, opts *corev1.PodLogOptions) (string, error) {
	// Not DoRaw: its error of a failed call says "unknown", where Error
	// reads the API server's Status (the kubelet API's answer in it).
	res := c.kube.CoreV1().Pods("default").GetLogs(pod, opts).Do(ctx)
	b, _ := res.Raw()
	return string(b), res.Error()
}

// containers lists the agent's containerd containers.
func (c *cluster) containers(ctx context.Context, t testing.TB) []string {
	t.Helper()
	cs, err := c.ctrd.Client().Containers(namespaces.WithNamespace(ctx, agentNS))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range cs {
		ids = append(ids, x.ID())
	}
	return ids
}

// TestAgentDeployments runs a Deployment of three container replicas and a
// Deployment of one unikernel through the agent: they become Available,
// their logs are right, and scaling down and deleting remove their pods and
// containerd containers.
func TestAgentDeployments(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	web := podTemplate(corev1.Container{Name: "web", Image: c.busybox,
		Command: []string{"sh", "-c", "echo hello from $POD_NAME; exec sleep 3600"},
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}})
	uk := podTemplate(corev1.Container{Name: "uk", Image: c.unikernel, Args: []string{"/httpd", "8080"}})
	uk.RuntimeClassName = ptrTo("osv")
	for _, d := range []*appsv1.Deployment{deployment("web", 3, web), deployment("uk", 1, uk)} {
		if _, err := c.kube.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct {
		name string
		n    int32
	}{{"web", 3}, {"uk", 1}} {
		waitFor(t, "deployment "+d.name+" available", 3*time.Minute, func(ctx context.Context) (bool, error) {
			got, err := c.kube.AppsV1().Deployments("default").Get(ctx, d.name, metav1.GetOptions{})
			return err == nil && got.Status.AvailableReplicas == d.n, err
		})
	}
	for _, p := range c.pods(ctx, t, "web") {
		var last string
		waitFor(t, "logs of "+p.Name, 30*time.Second, func(ctx context.Context) (bool, error) {
			out, err := c.logs(ctx, p.Name, &corev1.PodLogOptions{})
			last = fmt.Sprintf("%q, %v", out, err)
			return err == nil && out == "hello from "+p.Name+"\n", nil
		}, &last)
		if p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("%s: phase %s, status %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
		}
	}
	ukPod := c.pods(ctx, t, "uk")[0]
	waitFor(t, "unikernel logs", time.Minute, func(ctx context.Context) (bool, error) {
		out, err := c.logs(ctx, ukPod.Name, &corev1.PodLogOptions{})
		return err == nil && strings.Contains(out, "listening on :8080\n"), nil
	})
	if ids := c.containers(ctx, t); len(ids) != 4 {
		t.Errorf("containerd containers = %v, want 4", ids)
	}

	scale, err := c.kube.AppsV1().Deployments("default").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 1
	if _, err := c.kube.AppsV1().Deployments("default").UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web scaled to 1", time.Minute, func(ctx context.Context) (bool, error) {
		return len(c.pods(ctx, t, "web")) == 1 && len(c.containers(ctx, t)) == 2, nil
	})
	deleteAll(ctx, t, c)
}

// deleteAll deletes every Deployment and pod in default and waits until the
// agent has removed all their containers, their state and network namespaces.
func deleteAll(ctx context.Context, t testing.TB, c *cluster) {
	t.Helper()
	bg := metav1.DeletePropagationBackground
	if err := c.kube.AppsV1().Deployments("default").DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.kube.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	waitFor(t, "all pods and containers gone", 2*time.Minute, func(ctx context.Context) (bool, error) {
		l, err := c.kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(l.Items) == 0 && len(c.containers(ctx, t)) == 0, nil
	})
	if c.agent != nil {
		waitPodsCleaned(t, c)
	}
}

// waitPodsCleaned waits until the agent has removed every pod's state
// (volumes, hosts and hostname files, termination logs) and network
// namespace: a pod that ended is gone from the API as soon as it is deleted,
// while the agent may still be tearing it down.
func waitPodsCleaned(t testing.TB, c *cluster) {
	t.Helper()
	var left string
	waitFor(t, "the agent to remove the deleted pods' state and network namespaces", time.Minute, func(context.Context) (bool, error) {
		var names []string
		for _, d := range []string{filepath.Join(c.agent.Dir, "state", "pods"), filepath.Join(c.agent.Dir, "run", "netns")} {
			es, err := os.ReadDir(d)
			if err != nil && !os.IsNotExist(err) {
				return false, err
			}
			for _, e := range es {
				names = append(names, filepath.Join(d, e.Name()))
			}
		}
		left = strings.Join(names, " ")
		return len(names) == 0, nil
	}, &left)
}
