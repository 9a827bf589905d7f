package stats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// fakeRuntime serves metrics set per container ID; a missing ID has no task,
// one in hang blocks until the context ends.
type fakeRuntime struct {
	mu      sync.Mutex
	metrics map[string]*anypb.Any
	at      time.Time
	hang    map[string]bool
	calls   int
	// metricsErr and rootfsErr fail those calls for an ID; guest is the
	// guest view of unikernels, guestHang those whose monitor hangs.
	metricsErr, rootfsErr map[string]error
	guest                 map[string]GuestMemory
	guestHang             map[string]bool
}

func (f *fakeRuntime) Guest(ctx context.Context, id string) (GuestMemory, error) {
	f.mu.Lock()
	g, ok := f.guest[id]
	hang := f.guestHang[id]
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return GuestMemory{}, fmt.Errorf("dial qmp: %w", ctx.Err())
	}
	if !ok {
		return GuestMemory{}, fmt.Errorf("%s is no VM: %w", id, errdefs.ErrNotImplemented)
	}
	return g, nil
}

func (f *fakeRuntime) Metrics(ctx context.Context, id string) (*anypb.Any, time.Time, error) {
	f.mu.Lock()
	f.calls++
	m, ok := f.metrics[id]
	hang, at, merr := f.hang[id], f.at, f.metricsErr[id]
	f.mu.Unlock()
	if merr != nil {
		return nil, time.Time{}, merr
	}
	if hang {
		<-ctx.Done()
		return nil, time.Time{}, ctx.Err()
	}
	if !ok {
		return nil, time.Time{}, fmt.Errorf("task %s: %w", id, errdefs.ErrNotFound)
	}
	return m, at, nil
}

func (f *fakeRuntime) Rootfs(_ context.Context, id string) (uint64, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.rootfsErr[id]; err != nil {
		return 0, 0, err
	}
	return 4096, 2, nil
}

func runningPod(ns, name, uid string, containers ...string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
	start := metav1.NewTime(time.Unix(1000, 0))
	pod.Status.StartTime = &start
	for _, c := range containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: c,
			ContainerID: "containerd://" + uid + "-" + c,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}}})
	}
	return pod
}

func cpuV1(ns, mem uint64) *v1.Metrics {
	return &v1.Metrics{CPU: &v1.CPUStat{Usage: &v1.CPUUsage{Total: ns}},
		Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: mem, Limit: 9223372036854771712}, TotalRSS: mem / 2},
		Pids:   &v1.PidsStat{Current: 1}}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestCollector(t *testing.T, rt *fakeRuntime, pods []*corev1.Pod, clk *clock) (*Collector, string) {
	t.Helper()
	state := t.TempDir()
	c := New(Config{NodeName: "edge-1", Runtime: rt, Proc: "testdata/proc",
		StateDir: state, ImageFsDir: state, LogDir: filepath.Join(state, "logs"), VolumesDir: filepath.Join(state, "pods"),
		Pods: func(context.Context) ([]*corev1.Pod, error) { return pods, nil },
		PodNetwork: func(_ context.Context, uid types.UID) ([]statsv1alpha1.InterfaceStats, error) {
			if uid == "gone" {
				return nil, errors.New("no such namespace")
			}
			return []statsv1alpha1.InterfaceStats{{Name: "eth0", RxBytes: ptr(uint64(10)), TxBytes: ptr(uint64(20))}}, nil
		},
		Timeout: 50 * time.Millisecond, MaxAge: 10 * time.Second, Now: clk.now})
	return c, state
}

func TestSummaryNode(t *testing.T) {
	clk := &clock{time.Unix(2000, 0)}
	c, _ := newTestCollector(t, &fakeRuntime{}, nil, clk)
	s, err := c.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := s.Node
	// user+nice+system+irq+softirq+steal = 32939+10+9302+5+83+177 ticks.
	if got, want := *n.CPU.UsageCoreNanoSeconds, uint64(42516)*1e7; got != want {
		t.Errorf("node cpu = %d, want %d", got, want)
	}
	if n.CPU.UsageNanoCores != nil {
		t.Errorf("first gathering has a CPU rate: %d", *n.CPU.UsageNanoCores)
	}
	const kB = 1024
	usage := uint64(24683568-20589908) * kB
	ws := usage - 1686312*kB
	if *n.Memory.UsageBytes != usage || *n.Memory.WorkingSetBytes != ws || *n.Memory.RSSBytes != 491936*kB ||
		*n.Memory.AvailableBytes != 24683568*kB-ws {
		t.Errorf("node memory = usage %d ws %d rss %d avail %d", *n.Memory.UsageBytes, *n.Memory.WorkingSetBytes,
			*n.Memory.RSSBytes, *n.Memory.AvailableBytes)
	}
	if n.Network == nil || n.Network.Name != "ens4" || len(n.Network.Interfaces) != 2 {
		t.Fatalf("node network = %+v, want ens4 (default route) on top of eth0 and ens4", n.Network)
	}
	if n.Fs == nil || n.Fs.CapacityBytes == nil || *n.Fs.CapacityBytes == 0 || n.Runtime.ImageFs.CapacityBytes == nil {
		t.Errorf("node fs = %+v", n.Fs)
	}
	if n.NodeName != "edge-1" || n.Rlimit == nil || n.Rlimit.NumOfRunningProcesses == nil {
		t.Errorf("node = %+v", n)
	}
}

func TestSummaryPods(t *testing.T) {
	clk := &clock{time.Unix(2000, 0)}
	rt := &fakeRuntime{at: clk.t, metrics: map[string]*anypb.Any{
		"u1-a": mustAny(t, cpuV1(1e9, 100<<20)),
		"u1-b": mustAny(t, &v2.Metrics{CPU: &v2.CPUStat{UsageUsec: 2e6}, Memory: &v2.MemoryStat{Usage: 10 << 20, UsageLimit: 64 << 20}}),
		"u2-c": mustAny(t, cpuV1(3e9, 1<<20)),
	}, hang: map[string]bool{"u3-hung": true}}
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pending", UID: "u4"}}
	pods := []*corev1.Pod{
		runningPod("ns", "web", "u1", "a", "b"),
		runningPod("ns", "exiting", "u2", "c", "exited"), // exited: no task any more
		runningPod("ns", "hung", "u3", "hung"),           // its shim does not answer
		runningPod("ns", "netless", "gone", "x"),         // no task, no network namespace
		pending,
	}
	c, state := newTestCollector(t, rt, pods, clk)
	vol := filepath.Join(state, "pods", "u1", "volumes", "data")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(state, "logs", "ns_web_u1", "a")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(logDir, "0.log"), make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}

	s, err := c.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]statsv1alpha1.PodStats{}
	for _, p := range s.Pods {
		byName[p.PodRef.Name] = p
	}
	if _, ok := byName["pending"]; ok || len(s.Pods) != 4 {
		t.Fatalf("pods = %v, want web, exiting, hung, netless (not the pending one)", byName)
	}
	web := byName["web"]
	if len(web.Containers) != 2 {
		t.Fatalf("web containers = %+v", web.Containers)
	}
	if got := *web.CPU.UsageCoreNanoSeconds; got != 3e9 {
		t.Errorf("web cpu = %d, want 3e9", got)
	}
	if got := *web.Memory.WorkingSetBytes; got != 110<<20 {
		t.Errorf("web working set = %d, want 110 MiB", got)
	}
	b := web.Containers[1]
	if b.Name != "b" || b.Memory.AvailableBytes == nil || *b.Memory.AvailableBytes != 54<<20 {
		t.Errorf("container b = %+v, want 54 MiB available under its 64 MiB limit", b.Memory)
	}
	if web.Network == nil || *web.Network.TxBytes != 20 {
		t.Errorf("web network = %+v", web.Network)
	}
	if len(web.VolumeStats) != 1 || web.VolumeStats[0].Name != "data" || *web.VolumeStats[0].UsedBytes < 1<<20 {
		t.Errorf("web volumes = %+v, want data with 1 MiB", web.VolumeStats)
	}
	a := web.Containers[0]
	if a.Logs == nil || *a.Logs.UsedBytes < 8192 || a.Rootfs == nil || *a.Rootfs.UsedBytes != 4096 {
		t.Errorf("container a logs %+v rootfs %+v", a.Logs, a.Rootfs)
	}
	if e := web.EphemeralStorage; e == nil || *e.UsedBytes < 1<<20+8192+2*4096 {
		t.Errorf("web ephemeral storage = %+v", e)
	}
	if p := byName["exiting"]; len(p.Containers) != 1 || p.Containers[0].Name != "c" {
		t.Errorf("exiting pod containers = %+v, want c only", p.Containers)
	}
	if p := byName["hung"]; len(p.Containers) != 0 || p.CPU != nil {
		t.Errorf("hung pod = %+v, want no containers", p)
	}
	if p := byName["netless"]; p.Network != nil {
		t.Errorf("netless pod network = %+v", p.Network)
	}

	// Within MaxAge: the same summary, nothing asked again.
	calls := rt.calls
	clk.t = clk.t.Add(5 * time.Second)
	if s2, _ := c.Summary(context.Background()); s2 != s || rt.calls != calls {
		t.Errorf("summary gathered again within MaxAge (%d calls, was %d)", rt.calls, calls)
	}

	// Past it: gathered again, with rates from the first gathering.
	clk.t = clk.t.Add(5 * time.Second)
	rt.mu.Lock()
	rt.at = clk.t
	rt.metrics["u1-a"] = mustAny(t, cpuV1(1e9+10e9, 100<<20)) // a whole core over 10 s
	rt.metrics["u1-b"] = mustAny(t, &v2.Metrics{CPU: &v2.CPUStat{UsageUsec: 2e6}})
	rt.mu.Unlock()
	s3, err := c.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s3.Pods {
		if p.PodRef.Name != "web" {
			continue
		}
		if r := p.Containers[0].CPU.UsageNanoCores; r == nil || *r != 1e9 {
			t.Errorf("container a rate = %v, want 1e9 nanocores", r)
		}
		if r := p.CPU.UsageNanoCores; r == nil || *r != 1e9 {
			t.Errorf("pod rate = %v, want 1e9 nanocores", r)
		}
	}
	if r := s3.Node.CPU.UsageNanoCores; r == nil || *r != 0 {
		t.Errorf("node rate = %v, want 0 (the fixture did not change)", r)
	}
}

func TestRate(t *testing.T) {
	t0 := time.Unix(100, 0)
	for _, tc := range []struct {
		name      string
		prev, cur cpuSample
		want      *uint64
	}{
		{"no previous", cpuSample{}, cpuSample{t0, 5}, nil},
		{"half a core", cpuSample{t0, 1e9}, cpuSample{t0.Add(2 * time.Second), 2e9}, ptr(uint64(5e8))},
		{"counter reset", cpuSample{t0, 5e9}, cpuSample{t0.Add(time.Second), 1e9}, nil},
		{"same time", cpuSample{t0, 1}, cpuSample{t0, 2}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rate(tc.prev, tc.cur)
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("rate = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 50<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, n, err := diskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b < 50<<10 || n != 3 {
		t.Errorf("du = %d bytes %d inodes, want ≥ 50 KiB, 3", b, n)
	}
	if _, _, err := diskUsage(filepath.Join(dir, "missing")); !errdefs.IsNotFound(err) {
		t.Errorf("missing dir: %v, want not found", err)
	}
}

func TestSummaryMaxAgeZero(t *testing.T) {
	clk := &clock{time.Unix(2000, 0)}
	rt := &fakeRuntime{at: clk.t, metrics: map[string]*anypb.Any{"u1-a": mustAny(t, cpuV1(1e9, 1<<20))}}
	c, _ := newTestCollector(t, rt, []*corev1.Pod{runningPod("ns", "web", "u1", "a")}, clk)
	c.cfg.MaxAge = 0
	for range 3 {
		if _, err := c.Summary(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if rt.calls != 3 {
		t.Errorf("%d metrics calls for 3 summaries without a cache, want 3", rt.calls)
	}
}

// captureLog returns a context whose log.G writes to the returned buffer.
func captureLog() (context.Context, *bytes.Buffer) {
	var buf bytes.Buffer
	l := logrus.New()
	l.Out = &buf
	l.SetLevel(logrus.InfoLevel)
	return log.WithLogger(context.Background(), logrus.NewEntry(l)), &buf
}

// TestSummaryBadInput: what cannot be read is left out and logged, and the
// rest is still served: a cgroup that vanished mid-read (the shim's stats
// fail), a container that exited between its metrics and its rootfs, a
// VM whose stats monitor does not answer.
func TestSummaryBadInput(t *testing.T) {
	clk := &clock{time.Unix(2000, 0)}
	rt := &fakeRuntime{at: clk.t, metrics: map[string]*anypb.Any{
		"u1-ok":      mustAny(t, cpuV1(1e9, 10<<20)),
		"u1-exiting": mustAny(t, cpuV1(2e9, 20<<20)),
		"u2-vm":      mustAny(t, cpuV1(3e9, 90<<20)),
		"u3-vm":      mustAny(t, cpuV1(4e9, 80<<20)),
	},
		metricsErr: map[string]error{"u1-vanished": errors.New("failed to get stats: read /sys/fs/cgroup/feather/u1-vanished/memory.stat: no such file or directory")},
		rootfsErr:  map[string]error{"u1-exiting": fmt.Errorf("container u1-exiting: %w", errdefs.ErrNotFound)},
		guest:      map[string]GuestMemory{"u2-vm": {Bytes: 128 << 20, Touched: 60 << 20}},
		guestHang:  map[string]bool{"u3-vm": true},
	}
	pods := []*corev1.Pod{runningPod("ns", "mixed", "u1", "ok", "vanished", "exiting"),
		runningPod("ns", "uk", "u2", "vm"), runningPod("ns", "uk-hung", "u3", "vm")}
	c, _ := newTestCollector(t, rt, pods, clk)
	c.cfg.GuestTimeout = 30 * time.Millisecond
	ctx, logs := captureLog()
	start := time.Now()
	s, err := c.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("summary took %v with a hung monitor", d)
	}
	byName := map[string]statsv1alpha1.PodStats{}
	for _, p := range s.Pods {
		byName[p.PodRef.Name] = p
	}
	var names []string
	for _, cs := range byName["mixed"].Containers {
		names = append(names, cs.Name)
		if cs.Name == "exiting" && (cs.Rootfs != nil || cs.CPU == nil || *cs.Memory.WorkingSetBytes != 20<<20) {
			t.Errorf("exiting container %+v: want its figures without rootfs", cs)
		}
	}
	if strings.Join(names, ",") != "ok,exiting" {
		t.Errorf("mixed pod containers %v, want ok,exiting (vanished left out)", names)
	}
	if cs := byName["uk"].Containers; len(cs) != 1 || len(cs[0].UserDefinedMetrics) != 2 ||
		cs[0].UserDefinedMetrics[0].Value != 128<<20 || cs[0].UserDefinedMetrics[1].Value != 60<<20 {
		t.Errorf("uk containers %+v: want the guest's memory in userDefinedMetrics", cs)
	} else if *cs[0].Memory.WorkingSetBytes != 90<<20 {
		t.Errorf("uk's working set %d: want the VM's (its cgroup's)", *cs[0].Memory.WorkingSetBytes)
	}
	if cs := byName["uk-hung"].Containers; len(cs) != 1 || cs[0].UserDefinedMetrics != nil || *cs[0].CPU.UsageCoreNanoSeconds != 4e9 {
		t.Errorf("uk-hung containers %+v: want the VM's figures without the guest's", cs)
	}
	for _, want := range []string{
		`container=vanished`, `memory.stat: no such file`, // the vanished cgroup
		`container=exiting`, `rootfs usage left out`, // exited mid-scrape
		`guest view left out`, `pod=ns/uk-hung`, `deadline exceeded`, // the hung monitor
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "pod=ns/uk ") || strings.Count(logs.String(), "guest view left out") != 1 {
		t.Errorf("log has more than the hung monitor's guest view:\n%s", logs.String())
	}
}

// TestSystemContainers checks node.systemContainers: the agent's and
// containerd's processes, and the pods summed.
func TestSystemContainers(t *testing.T) {
	clk := &clock{time.Unix(2000, 0)}
	rt := &fakeRuntime{at: clk.t, metrics: map[string]*anypb.Any{
		"u1-a": mustAny(t, cpuV1(1e9, 10<<20)), "u2-b": mustAny(t, cpuV1(2e9, 20<<20))}}
	c, _ := newTestCollector(t, rt, []*corev1.Pod{runningPod("ns", "p1", "u1", "a"), runningPod("ns", "p2", "u2", "b")}, clk)
	c.cfg.SystemProcesses = func(context.Context) map[string]int {
		return map[string]int{statsv1alpha1.SystemContainerKubelet: 4242, statsv1alpha1.SystemContainerRuntime: 99999}
	}
	ctx, logs := captureLog()
	s, err := c.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]statsv1alpha1.ContainerStats{}
	for _, cs := range s.Node.SystemContainers {
		got[cs.Name] = cs
	}
	k, ok := got["kubelet"]
	if !ok || *k.CPU.UsageCoreNanoSeconds != 4e9 || *k.Memory.WorkingSetBytes != 48<<20 || *k.Memory.RSSBytes != 20<<20 ||
		*k.Memory.PageFaults != 1520 || *k.Memory.MajorPageFaults != 20 || k.CPU.UsageNanoCores != nil {
		t.Errorf("kubelet = %+v: want testdata/proc/4242's figures", k)
	}
	if _, ok := got["runtime"]; ok || !strings.Contains(logs.String(), "system container left out") {
		t.Errorf("runtime of a process that is gone: %+v, log %s", got["runtime"], logs.String())
	}
	p, ok := got["pods"]
	if !ok || *p.CPU.UsageCoreNanoSeconds != 3e9 || *p.Memory.WorkingSetBytes != 30<<20 {
		t.Errorf("pods = %+v: want the two pods summed", p)
	}

	// A second gathering has rates.
	clk.t = clk.t.Add(20 * time.Second)
	rt.mu.Lock()
	rt.at = clk.t
	rt.metrics["u1-a"] = mustAny(t, cpuV1(1e9+10e9, 10<<20))
	rt.metrics["u2-b"] = mustAny(t, cpuV1(2e9+10e9, 20<<20))
	rt.mu.Unlock()
	if s, err = c.Summary(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cs := range s.Node.SystemContainers {
		switch cs.Name {
		case "kubelet":
			if r := cs.CPU.UsageNanoCores; r == nil || *r != 0 {
				t.Errorf("kubelet rate %v, want 0 (the fixture did not change)", r)
			}
		case "pods":
			if r := cs.CPU.UsageNanoCores; r == nil || *r != 1e9 {
				t.Errorf("pods rate %v, want 1e9 (two half cores)", r)
			}
		}
	}
}
