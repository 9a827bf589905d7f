package nodeinfo

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// fakeCheck is a health check whose answer the test sets.
type fakeCheck struct {
	mu  sync.Mutex
	err error
}

func (f *fakeCheck) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeCheck) check(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func condition(n *corev1.Node, t corev1.NodeConditionType) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// next waits for the next node passed to the callback. The deadline only turns a hang into a failure.
func next(t *testing.T, nodes <-chan *corev1.Node) *corev1.Node {
	t.Helper()
	select {
	case n := <-nodes:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no node status notification")
		return nil
	}
}

func TestProvider(t *testing.T) {
	root := copyTree(t, "v2")
	m := testMonitor(root)
	runtimeCheck := &fakeCheck{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// An hour between measurements: only Refresh and Ping drive this test.
	p, err := NewProvider(ctx, testConfig(), m, ProviderConfig{Interval: time.Hour, RuntimeCheck: runtimeCheck.check})
	if err != nil {
		t.Fatal(err)
	}
	registered := p.Node()
	if registered.Labels[BackendsLabel] != "container.osv" || condition(registered, corev1.NodeReady).Status != corev1.ConditionTrue {
		t.Fatalf("registered node: labels %v, conditions %v", registered.Labels, registered.Status.Conditions)
	}
	if got, want := p.Allocatable(), m.Allocatable(ResourcesFromList(registered.Status.Capacity)); got != want {
		t.Errorf("Allocatable() = %+v, want %+v", got, want)
	}

	nodes := make(chan *corev1.Node)
	p.NotifyNodeStatus(ctx, func(n *corev1.Node) { nodes <- n })

	// Nothing changed: no notification. Then memory runs short: the first notification is that change.
	p.Refresh()
	writeFile(t, root, "proc/meminfo", "MemTotal: 4194304 kB\nMemAvailable: 51200 kB\n")
	p.Refresh()
	n := next(t, nodes)
	if c := condition(n, corev1.NodeMemoryPressure); c.Status != corev1.ConditionTrue {
		t.Fatalf("MemoryPressure = %+v, want True", c)
	}
	if n.Labels[BackendsLabel] != "container.osv" || n.Name != "feather-1" || len(n.Spec.Taints) != 1 {
		t.Errorf("notified node lost its metadata or spec: %v %v %v", n.Name, n.Labels, n.Spec.Taints)
	}

	// containerd stops answering: Ping still succeeds (the node reports NotReady itself) and triggers a status.
	runtimeCheck.set(errors.New("connection refused"))
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping() = %v, want nil while the agent runs", err)
	}
	n = next(t, nodes)
	if c := condition(n, corev1.NodeReady); c.Status != corev1.ConditionFalse || c.Message != "container runtime is down: connection refused" {
		t.Fatalf("Ready = %+v, want False: container runtime is down", c)
	}

	// The node gets more CPU: capacity and allocatable follow.
	writeFile(t, root, "sys/fs/cgroup/feather.slice/agent.service/cpu.max", "max 100000\n")
	p.Refresh()
	n = next(t, nodes)
	if got := n.Status.Capacity.Cpu().MilliValue(); got != 2000 {
		t.Errorf("capacity cpu %dm, want 2000m", got)
	}
	if got := p.Allocatable().CPUMilli; got != 2000 {
		t.Errorf("Allocatable().CPUMilli = %d, want 2000", got)
	}

	// containerd is back.
	runtimeCheck.set(nil)
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	n = next(t, nodes)
	if c := condition(n, corev1.NodeReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("Ready = %+v, want True", c)
	}

	cancel()
	if err := p.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping() after cancel = %v, want context.Canceled", err)
	}
}

func TestProviderRefusesBadConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Labels = map[string]string{"kubernetes.io/role": "agent"}
	if _, err := NewProvider(context.Background(), cfg, testMonitor("testdata/v1"), ProviderConfig{}); err == nil {
		t.Fatal("NewProvider() with a forbidden label: no error")
	}
}

func TestStatusChanged(t *testing.T) {
	m := testMonitor("testdata/v1")
	a, err := build(testConfig(), m, Health{}, time.Unix(1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	b := a.DeepCopy()
	if err := update(b, testConfig(), m, Health{}, time.Unix(2000, 0)); err != nil {
		t.Fatal(err)
	}
	if statusChanged(a, b) {
		t.Error("statusChanged() on a new heartbeat only: true")
	}
	b.Labels["x"] = "y"
	if statusChanged(a, b) {
		t.Error("statusChanged() on labels: true")
	}
	if err := update(b, testConfig(), m, Health{Runtime: errors.New("down")}, time.Unix(3000, 0)); err != nil {
		t.Fatal(err)
	}
	if !statusChanged(a, b) {
		t.Error("statusChanged() on NotReady: false")
	}
}
