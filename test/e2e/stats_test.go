package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// TestAgentStats checks the agent's /stats/summary, /metrics/resource,
// /metrics/cadvisor, /metrics and /healthz against what the node's own
// figures say, through the API server's node proxy as metrics-server and
// `kubectl get --raw` reach them: a container burning a core, one holding
// 100 MiB of memory (a file on a memory-medium emptyDir: shmem, which the
// working set counts), a 50 MiB file on an emptyDir served to the test over
// the pod network, and a unikernel.
func TestAgentStats(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(func() { deleteAll(ctx, t, c); cancel() })

	burn := newPod("burn", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("while :; do :; done")})
	mem := newPod("mem", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command:      sh("head -c 104857600 /dev/zero > /mem/fill && exec sleep 3600"),
		VolumeMounts: []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}}})
	limit := resource.MustParse("200Mi")
	mem.Spec.Volumes = []corev1.Volume{{Name: "mem", VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &limit}}}}
	disk := newPod("disk", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
		Command:      sh("head -c 52428800 /dev/urandom > /data/f && touch /data/done && exec httpd -f -p 8080 -h /data"),
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}})
	disk.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	uk := newPod("uk", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"}})
	ukBurn := newPod("uk-burn", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/burn"}})
	ukMem := newPod("uk-mem", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/alloc", "100"}})
	for _, p := range []*corev1.Pod{uk, ukBurn, ukMem} {
		p.Spec.RuntimeClassName = ptrTo("osv")
	}
	c.create(ctx, t, burn, mem, disk, uk, ukBurn, ukMem)
	for _, name := range []string{"burn", "mem", "disk", "uk", "uk-burn", "uk-mem"} {
		c.waitPod(t, name, 3*time.Minute, ready)
	}

	// A unikernel is Running once QEMU runs, seconds before its program
	// has written its memory under TCG on a machine whose cores the burners
	// take: the guest says when every page is written.
	waitFor(t, "uk-mem's guest to write its 100 MiB", 3*time.Minute, func(ctx context.Context) (bool, error) {
		out, err := c.logs(ctx, "uk-mem", &corev1.PodLogOptions{})
		return err == nil && strings.Contains(out, "allocated 100 MiB"), nil
	})

	// Bytes sent from a pod: the test fetches disk's file over the pod
	// network once the container has written it.
	diskPod := c.pod(ctx, t, "disk")
	var body []byte
	waitFor(t, "disk's file over HTTP", time.Minute, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+diskPod.Status.PodIP+":8080/done", nil)
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, nil
		}
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://"+diskPod.Status.PodIP+":8080/f", nil)
		resp, err = (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err == nil && len(body) == 50<<20, nil
	})

	// The burning container's and VM's CPU, measured independently from
	// their process's /proc/PID/stat (QEMU's: all its threads) over the same
	// window as two summaries.
	burners := []string{"burn", "uk-burn"}
	pids := map[string]int{}
	for _, b := range burners {
		pids[b] = c.taskPid(ctx, t, c.pod(ctx, t, b))
	}
	procT1 := map[string]float64{}
	s1, at1 := c.summary(ctx, t), time.Now()
	for _, b := range burners {
		procT1[b] = procCPU(t, pids[b])
	}
	time.Sleep(12 * time.Second) // the agent keeps a summary 10 s; this is the measuring window, not a wait for a state
	s2, at2 := c.summary(ctx, t), time.Now()
	for _, b := range burners {
		procCores := (procCPU(t, pids[b]) - procT1[b]) / at2.Sub(at1).Seconds()
		cpu1, cpu2 := container(t, s1, b).CPU, container(t, s2, b).CPU
		agentCores := float64(*cpu2.UsageCoreNanoSeconds-*cpu1.UsageCoreNanoSeconds) / float64(cpu2.Time.Sub(cpu1.Time.Time).Nanoseconds())
		if cpu2.UsageNanoCores == nil {
			t.Fatalf("second summary has no usageNanoCores for %s", b)
		}
		nano := float64(*cpu2.UsageNanoCores) / 1e9
		t.Logf("%s: agent %.0fm (usageNanoCores %.0fm), its process by /proc %.0fm", b, agentCores*1000, nano*1000, procCores*1000)
		if d := agentCores/procCores - 1; d < -0.1 || d > 0.1 {
			t.Errorf("%s's CPU: agent %.0fm, /proc %.0fm: more than 10%% apart", b, agentCores*1000, procCores*1000)
		}
		// A core on an idle machine; on a busy one, what it gets: the
		// figure must be what the process used.
		if nano < 0.9*procCores || nano > 1.1*procCores || nano < 0.05 {
			t.Errorf("%s's usageNanoCores %.0fm, want its process's %.0fm ± 10%%", b, nano*1000, procCores*1000)
		}
	}

	// 100 MiB of memory in the working set, within 20%: a container's
	// own. A VM's is what QEMU holds on the host (its RSS, within 20%): of
	// the 100 MiB the guest writes, some land on guest pages the guest's
	// kernel had already touched (and QEMU already holds), so the VM grows
	// by less than 100 MiB beside an idle VM of the same image.
	if ws := float64(*container(t, s2, "mem").Memory.WorkingSetBytes) / (1 << 20); ws < 80 || ws > 120 {
		t.Errorf("mem's working set %.1f MiB, want 100 MiB ± 20%%", ws)
	}
	idle, full := float64(*container(t, s2, "uk").Memory.WorkingSetBytes)/(1<<20), float64(*container(t, s2, "uk-mem").Memory.WorkingSetBytes)/(1<<20)
	rss := procRSS(t, c.taskPid(ctx, t, c.pod(ctx, t, "uk-mem")))
	t.Logf("VM working sets: idle %.1f MiB, with 100 MiB allocated %.1f MiB (its QEMU's RSS %.1f MiB)", idle, full, rss)
	if full < 0.8*rss || full > 1.2*rss {
		t.Errorf("uk-mem's working set %.1f MiB, its QEMU's RSS %.1f MiB: more than 20%% apart", full, rss)
	}
	if d := full - idle; d < 50 || d > 120 {
		t.Errorf("uk-mem's working set %.1f MiB is %.1f MiB above the idle VM's %.1f MiB, want most of the 100 MiB its guest wrote", full, d, idle)
	}
	// The guest's own view beside it (userDefinedMetrics): its RAM as
	// QEMU's balloon tells it, and the guest RAM resident on the host,
	// which holds the 100 MiB it wrote and is part of the VM's cost.
	guest := map[string]float64{}
	for _, m := range container(t, s2, "uk-mem").UserDefinedMetrics {
		guest[m.Name] = m.Value / (1 << 20)
	}
	t.Logf("uk-mem's guest: RAM %.1f MiB, resident %.1f MiB", guest["guest_memory_bytes"], guest["guest_memory_touched_bytes"])
	if ram, touched := guest["guest_memory_bytes"], guest["guest_memory_touched_bytes"]; ram < 100 || touched < 100 || touched > ram || touched > full {
		t.Errorf("uk-mem's guest view %v: want its RAM, and ≥ 100 MiB of it resident, within the VM's working set %.1f MiB", guest, full)
	}
	if m := container(t, s2, "mem").UserDefinedMetrics; len(m) != 0 {
		t.Errorf("a container has a guest view: %+v", m)
	}

	// The node's system containers, as kubelet names them.
	sys := map[string]statsv1alpha1.ContainerStats{}
	for _, cs := range s2.Node.SystemContainers {
		sys[cs.Name] = cs
	}
	for _, name := range []string{"kubelet", "runtime", "pods"} {
		cs, ok := sys[name]
		if !ok || cs.CPU == nil || cs.CPU.UsageCoreNanoSeconds == nil || *cs.CPU.UsageCoreNanoSeconds == 0 ||
			cs.Memory == nil || cs.Memory.WorkingSetBytes == nil || *cs.Memory.WorkingSetBytes == 0 {
			t.Errorf("node.systemContainers %s: %+v, want its CPU and memory", name, cs)
			continue
		}
		t.Logf("system container %s: cpu %.2fs, working set %.1f MiB", name, float64(*cs.CPU.UsageCoreNanoSeconds)/1e9, float64(*cs.Memory.WorkingSetBytes)/(1<<20))
	}
	if ws, want := float64(*sys["kubelet"].Memory.WorkingSetBytes)/(1<<20), procRSS(t, c.agent.Pid()); ws < 0.8*want || ws > 1.2*want {
		t.Errorf("kubelet system container's working set %.1f MiB, the agent's RSS %.1f MiB", ws, want)
	}
	if p := sys["pods"].Memory; p != nil && float64(*p.WorkingSetBytes) < float64(*container(t, s2, "mem").Memory.WorkingSetBytes)+float64(*container(t, s2, "uk-mem").Memory.WorkingSetBytes) {
		t.Errorf("pods system container's working set %d: less than mem's and uk-mem's", *p.WorkingSetBytes)
	}

	for _, p := range s2.Pods {
		switch p.PodRef.Name {
		case "disk":
			if p.Network == nil || p.Network.TxBytes == nil || *p.Network.TxBytes < 50<<20 {
				t.Errorf("disk's network %+v: want ≥ 50 MiB sent", p.Network)
			}
			var vol *statsv1alpha1.VolumeStats
			for i := range p.VolumeStats {
				if p.VolumeStats[i].Name == "data" {
					vol = &p.VolumeStats[i]
				}
			}
			if vol == nil || vol.UsedBytes == nil || *vol.UsedBytes < 50<<20 || *vol.UsedBytes > 55<<20 {
				t.Errorf("disk's volume data: %+v, want 50 MiB used", vol)
			}
			if e := p.EphemeralStorage; e == nil || *e.UsedBytes < 50<<20 {
				t.Errorf("disk's ephemeral storage %+v: want ≥ 50 MiB", e)
			}
		case "uk":
			u := p.Containers
			if len(u) != 1 || *u[0].CPU.UsageCoreNanoSeconds == 0 || *u[0].Memory.WorkingSetBytes < 16<<20 {
				t.Errorf("uk's container %+v: want the VM's CPU and memory (QEMU's cgroup)", u)
			} else if u[0].Rootfs == nil || u[0].Rootfs.UsedBytes == nil || *u[0].Rootfs.UsedBytes == 0 {
				t.Errorf("uk's rootfs %+v: want its instance disk's bytes", u[0].Rootfs)
			}
			t.Logf("uk: cpu %.2fs, working set %.1f MiB, instance disk %d KiB", float64(*u[0].CPU.UsageCoreNanoSeconds)/1e9,
				float64(*u[0].Memory.WorkingSetBytes)/(1<<20), *u[0].Rootfs.UsedBytes>>10)
		}
	}

	// The node: as /proc says, within 10%.
	n := s2.Node
	if got, want := float64(*n.CPU.UsageCoreNanoSeconds), hostCPUNs(t); got < 0.9*want || got > 1.1*want {
		t.Errorf("node cpu %.0fs, /proc/stat %.0fs", got/1e9, want/1e9)
	}
	if got, want := float64(*n.Memory.WorkingSetBytes), hostWorkingSet(t); got < 0.9*want || got > 1.1*want {
		t.Errorf("node working set %.0f MiB, /proc/meminfo %.0f MiB", got/(1<<20), want/(1<<20))
	}
	if n.Fs == nil || n.Fs.CapacityBytes == nil || n.Network == nil || n.Rlimit == nil {
		t.Errorf("node lacks fs, network or rlimit: %+v", n)
	}

	// /metrics/resource, as metrics-server parses it.
	fams := c.metrics(ctx, t, "metrics/resource")
	found := false
	for _, m := range fams["container_cpu_usage_seconds_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.Label {
			l[p.GetName()] = p.GetValue()
		}
		if l["pod"] == "burn" && l["container"] == "c" && l["namespace"] == "default" && m.GetTimestampMs() > 0 && m.Counter.GetValue() > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("/metrics/resource has no container_cpu_usage_seconds_total for burn: %v", fams["container_cpu_usage_seconds_total"])
	}
	for _, name := range []string{"node_cpu_usage_seconds_total", "node_memory_working_set_bytes", "pod_memory_working_set_bytes", "container_start_time_seconds"} {
		if len(fams[name].GetMetric()) == 0 {
			t.Errorf("/metrics/resource lacks %s", name)
		}
	}
	if v := fams["resource_scrape_error"].GetMetric(); len(v) != 1 || v[0].Gauge.GetValue() != 0 {
		t.Errorf("resource_scrape_error = %v", v)
	}
	cad := c.metrics(ctx, t, "metrics/cadvisor")
	if len(cad["container_network_transmit_bytes_total"].GetMetric()) == 0 {
		t.Errorf("/metrics/cadvisor lacks container_network_transmit_bytes_total")
	}
	if len(cad["feather_guest_memory_touched_bytes"].GetMetric()) < 3 {
		t.Errorf("/metrics/cadvisor has the guest view of %d unikernels, want 3", len(cad["feather_guest_memory_touched_bytes"].GetMetric()))
	}
	own := c.metrics(ctx, t, "metrics")
	for _, name := range []string{"feather_pods", "feather_pod_start_duration_seconds", "feather_image_pull_duration_seconds",
		"feather_vm_boot_duration_seconds", "process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines", "go_memstats_heap_alloc_bytes"} {
		if _, ok := own[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	var started, boots uint64
	for _, m := range own["feather_pod_start_duration_seconds"].GetMetric() {
		started += m.GetHistogram().GetSampleCount()
	}
	for _, m := range own["feather_vm_boot_duration_seconds"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.Label {
			l[p.GetName()] = p.GetValue()
		}
		h := m.GetHistogram()
		boots += h.GetSampleCount()
		t.Logf("VM boots %v: %d, mean %.2f s", l, h.GetSampleCount(), h.GetSampleSum()/float64(max(h.GetSampleCount(), 1)))
		if (l["mode"] != "direct" && l["mode"] != "disk") || (l["accel"] != "kvm" && l["accel"] != "tcg") {
			t.Errorf("feather_vm_boot_duration_seconds labels %v", l)
		}
	}
	if started < 6 || boots < 3 {
		t.Errorf("/metrics: %d pod starts, %d VM boots; want the 6 pods, 3 of them unikernels", started, boots)
	}
	// Failed containerd calls are counted as they happen (a unit test
	// makes some); here there may be none, and then the family is absent.
	for _, m := range own["feather_containerd_errors_total"].GetMetric() {
		t.Logf("containerd errors: %v %v", m.GetLabel(), m.GetCounter().GetValue())
	}
	if b := c.proxy(ctx, t, "healthz"); string(b) != "ok" {
		t.Errorf("/healthz = %q", b)
	}

	// Anonymous requests are refused.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/stats/summary", c.agent.Port), nil)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Do(req) //nolint:gosec // the test only checks that it is refused
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous /stats/summary: %s, want 401", resp.Status)
	}

	// A VM whose QMP monitor does not answer (its QEMU stopped): the
	// endpoint still answers, with the VM's cgroup figures and without its
	// guest view, and the agent logs what it left out.
	ukPid := c.taskPid(ctx, t, c.pod(ctx, t, "uk"))
	if err := syscall.Kill(ukPid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(ukPid, syscall.SIGCONT)
		}
	}()
	var ukStats statsv1alpha1.ContainerStats
	waitFor(t, "a summary without the stopped VM's guest view", 45*time.Second, func(ctx context.Context) (bool, error) {
		s := c.summary(ctx, t)
		ukStats = container(t, s, "uk")
		container(t, s, "uk-mem")
		return len(ukStats.UserDefinedMetrics) == 0, nil
	})
	if ukStats.CPU.UsageCoreNanoSeconds == nil || *ukStats.Memory.WorkingSetBytes == 0 {
		t.Errorf("stopped VM's stats %+v: want its cgroup's figures", ukStats)
	}
	if !strings.Contains(c.agent.Log(2000), "stats: guest view left out") {
		t.Errorf("the agent did not log the guest view it left out")
	}
	if err := syscall.Kill(ukPid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false

	// A pod whose container exits during scrapes: the endpoint answers for
	// the rest.
	c.create(ctx, t, newPod("flap", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("sleep 0.3")}))
	for deadline := time.Now().Add(25 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		s := c.summary(ctx, t)
		container(t, s, "burn")
	}
	assertNoStatsErrors(t, c.agent.Log(2000))
}

// summary GETs /stats/summary through the API server's node proxy and
// decodes it strictly as kubelet's stats/v1alpha1.
func (c *cluster) summary(ctx context.Context, t *testing.T) *statsv1alpha1.Summary {
	t.Helper()
	b := c.proxy(ctx, t, "stats/summary")
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s statsv1alpha1.Summary
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("/stats/summary is not stats/v1alpha1: %v: %.300s", err, b)
	}
	if s.Node.NodeName != c.agent.Name || s.Node.CPU == nil || s.Node.Memory == nil {
		t.Fatalf("/stats/summary node: %+v", s.Node)
	}
	return &s
}

func (c *cluster) proxy(ctx context.Context, t *testing.T, path string) []byte {
	t.Helper()
	b, err := c.kube.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", c.agent.Name, "proxy", path).DoRaw(ctx)
	if err != nil {
		t.Fatalf("node proxy /%s: %v: %s", path, err, b)
	}
	return b
}

func (c *cluster) metrics(ctx context.Context, t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(c.proxy(ctx, t, path)))
	if err != nil {
		t.Fatalf("/%s: %v", path, err)
	}
	return fams
}

// container returns pod's (only) container in s.
func container(t *testing.T, s *statsv1alpha1.Summary, pod string) statsv1alpha1.ContainerStats {
	t.Helper()
	for _, p := range s.Pods {
		if p.PodRef.Name == pod && p.PodRef.Namespace == "default" {
			if len(p.Containers) != 1 || p.Containers[0].CPU == nil || p.Containers[0].Memory == nil {
				t.Fatalf("pod %s containers: %+v", pod, p.Containers)
			}
			return p.Containers[0]
		}
	}
	t.Fatalf("/stats/summary has no pod %s", pod)
	return statsv1alpha1.ContainerStats{}
}

// taskPid is the pid of pod's first container's task.
func (c *cluster) taskPid(ctx context.Context, t *testing.T, pod *corev1.Pod) int {
	t.Helper()
	id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
	cctx := namespaces.WithNamespace(ctx, agentNS)
	ct, err := c.ctrd.Client().LoadContainer(cctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ct.Task(cctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return int(task.Pid())
}

// procCPU is the CPU time, in seconds, process pid has used.
func procCPU(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// procRSS is process pid's resident memory in MiB.
func procRSS(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	t.Fatalf("/proc/%d/status has no VmRSS", pid)
	return 0
}

func hostCPUNs(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var sum float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, _ := strconv.ParseFloat(f[i], 64)
		sum += v
	}
	return sum * 1e7
}

func hostWorkingSet(t *testing.T) float64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		kv[k] = n * 1024
	}
	return kv["MemTotal"] - kv["MemFree"] - kv["Inactive(file)"]
}

// assertNoStatsErrors fails t on an error or warning the agent logged while
// serving stats (a container left out is logged at info, and fine).
func assertNoStatsErrors(t *testing.T, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if (strings.Contains(line, "level=error") || strings.Contains(line, "level=warning")) &&
			(strings.Contains(line, "stats") || strings.Contains(line, "metrics")) {
			t.Errorf("agent log: %s", line)
		}
	}
}
