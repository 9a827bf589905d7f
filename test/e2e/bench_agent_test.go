package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/test/leak"
)

// BenchmarkAgent prints the agent's own figures beside an upstream
// kubelet's, measured in the same run on the same control plane: each node's
// memory registered and idle with 0 pods and with 30 container pods, its CPU
// time over two idle minutes, and the cost of each pod beyond the node agent
// (what the agent or kubelet grows by, and the processes started for the
// pod); for the agent also a unikernel pod's (the test guest, direct boot),
// and the time from creating a pod to seeing it Running, for a container pod
// and a unikernel pod side by side. The kubelet runs on a containerd of its
// own with the CRI plugin (the agent's has none), the same build and config
// otherwise, after the agent's pods are gone.
func BenchmarkAgent(b *testing.B) {
	osvPrerequisites(b)
	harness.RequiresBin(b, "kubelet")
	env := harness.New(b)
	// At info level, as an agent runs in production: the harness's default
	// debug level logs every sync.
	hc := env.StartCluster(harness.ClusterOptions{Agent: harness.AgentOptions{Args: []string{"--log-level", "info"}}})
	c := &cluster{env: env, cp: hc.ControlPlane, ctrd: hc.Containerd, agent: hc.Agent, kube: hc.Kube,
		busybox: hc.Busybox, unikernel: hc.Unikernel}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	pid := c.agent.Pid()
	const (
		settle  = 20 * time.Second // after Ready, and after the pods are up
		idleCPU = 2 * time.Minute
		runs    = 5
		busy    = 30 // container pods: 30 TCG VMs would not fit 2 cores
		vms     = 3  // unikernel pods
	)
	type kind struct {
		name string
		spec corev1.PodSpec
		took []time.Duration
	}
	ctr := podTemplate(corev1.Container{Name: "c", Image: c.busybox, Command: []string{"sleep", "3600"}})
	uk := podTemplate(corev1.Container{Name: "uk", Image: c.unikernel, Args: []string{"/sleep", "3600"}})
	uk.RuntimeClassName = ptrTo("osv")
	kinds := []*kind{{name: "container pod", spec: ctr}, {name: "unikernel pod (direct boot)", spec: uk}}
	var ours, theirs nodeFigures
	var ukShim, ukQEMU, ukVirtiofsd []mem
	var guestRAM int64 // KiB, mean over the VMs
	loggerExe := "-"
	for b.Loop() {
		ours.idleFor(b, pid, settle, idleCPU)

		// The first pod of each kind pulls its image; it is not counted.
		for _, k := range kinds {
			for n := range runs + 1 {
				d := timeToRunning(ctx, b, c, fmt.Sprintf("start-%d-%d", len(k.took), n), k.spec)
				if n > 0 {
					k.took = append(k.took, d)
				}
			}
		}

		runDeployment(ctx, b, c, "idle", busy, ctr)
		time.Sleep(settle)
		ours.loaded = memOf(b, pid)
		ours.shims = memOfAll(b, "containerd-shim-runc-v2", c.ctrd.Dir)
		// Each container's logger: feather-cri-log, or the agent's own
		// binary where that is not installed.
		procs, err := leak.Named("feather-cri-log", "feather")
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range procs {
			if exe, _, _ := strings.Cut(p.Cmdline, " cri-log "); exe != p.Cmdline {
				ours.loggers = append(ours.loggers, memOf(b, p.Pid))
				loggerExe = filepath.Base(exe)
			}
		}
		deleteAll(ctx, b, c)

		runDeployment(ctx, b, c, "vms", vms, uk)
		time.Sleep(settle)
		ukShim = memOfAll(b, "containerd-shim-osv-v1", c.ctrd.Dir)
		ukQEMU = memOfAll(b, "qemu-system-x86_64", "")
		for _, p := range procsOf(b, "qemu-system-x86_64", "") {
			guestRAM += shmemOf(b, p.Pid) / int64(vms)
		}
		ukVirtiofsd = memOfAll(b, "virtiofsd", "")
		deleteAll(ctx, b, c)
		waitFor(b, "the VMs gone", 2*time.Minute, func(context.Context) (bool, error) {
			return len(procsOf(b, "qemu-system-x86_64", "")) == 0, nil
		})

		// The upstream kubelet, on a containerd of its own with CRI.
		k, kctrd := startBenchKubelet(ctx, b, hc)
		theirs.idleFor(b, k.Pid(), settle, idleCPU)
		kctr := ctr
		kctr.NodeSelector = map[string]string{"kubernetes.io/hostname": k.Name}
		runDeployment(ctx, b, c, "kidle", busy, kctr)
		time.Sleep(settle)
		theirs.loaded = memOf(b, k.Pid())
		theirs.shims = memOfAll(b, "containerd-shim-runc-v2", kctrd.Dir)
		deleteAll(ctx, b, c)
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(os.Stdout, "\nThe agent (bin/feather, %s) beside the upstream kubelet (_output/bin/kubelet), idle %s after its node is Ready or its pods are up:\n", exeMiB(b, pid), settle)
	fmt.Fprintln(tw, "figure\tagent\tkubelet\tagent/kubelet\t")
	row := func(name string, o, t float64, unit string) {
		ratio := "-"
		if t > 0 && o >= 0 {
			ratio = fmt.Sprintf("%.2f", o/t)
		}
		f := func(v float64) string {
			if v < 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f %s", v, unit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, f(o), f(t), ratio)
	}
	for _, f := range []struct {
		name  string
		field func(mem) int64
	}{{"RSS", mem.rss}, {"PSS", mem.pss}, {"anon", mem.anon}} {
		row(f.name+", idle, 0 pods", kib(f.field(ours.idle)), kib(f.field(theirs.idle)), "MiB")
		row(fmt.Sprintf("%s, idle, %d container pods", f.name, busy), kib(f.field(ours.loaded)), kib(f.field(theirs.loaded)), "MiB")
	}
	row(fmt.Sprintf("CPU over %s idle, 0 pods", idleCPU), 100*ours.cpu.Seconds()/idleCPU.Seconds(), 100*theirs.cpu.Seconds()/idleCPU.Seconds(), "% of a core")
	fmt.Fprintln(tw, "per container pod (PSS)\t\t\t\t")
	row("  node agent's growth", kib(ours.loaded.PSS-ours.idle.PSS)/busy, kib(theirs.loaded.PSS-theirs.idle.PSS)/busy, "MiB")
	row("  runc shim (one per pod)", kib(meanOf(ours.shims, mem.pss)), kib(meanOf(theirs.shims, mem.pss)), "MiB")
	row("  logger ("+loggerExe+", one per container)", kib(meanOf(ours.loggers, mem.pss)), -1, "MiB")
	row("  total", kib(ours.loaded.PSS-ours.idle.PSS)/busy+kib(meanOf(ours.shims, mem.pss))+kib(meanOf(ours.loggers, mem.pss)),
		kib(theirs.loaded.PSS-theirs.idle.PSS)/busy+kib(meanOf(theirs.shims, mem.pss)), "MiB")
	fmt.Fprintf(tw, "per unikernel pod (mean of %d; TCG unless /run/feather/accel says kvm)\t\t\t\t\n", vms)
	row("  shim-osv RSS", kib(meanOf(ukShim, mem.rss)), -1, "MiB")
	row("  shim-osv PSS", kib(meanOf(ukShim, mem.pss)), -1, "MiB")
	row("  shim-osv anon", kib(meanOf(ukShim, mem.anon)), -1, "MiB")
	row("  QEMU RSS", kib(meanOf(ukQEMU, mem.rss)), -1, "MiB")
	row("  QEMU RSS beyond the guest RAM it touched", kib(meanOf(ukQEMU, mem.rss)-guestRAM), -1, "MiB")
	row("  virtiofsd PSS (all of one pod's)", kib(meanOf(ukVirtiofsd, mem.pss)*int64(len(ukVirtiofsd))/vms), -1, "MiB")
	tw.Flush()
	fmt.Fprintf(os.Stdout, "\nPod create → Running on the agent (median of %d, seen by a watch; images already pulled; TCG unless /run/feather/accel says kvm):\n", runs)
	fmt.Fprintln(tw, "pod\tcreate→Running\tmin\tmax\t")
	for _, k := range kinds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", k.name, median(k.took),
			slices.Min(k.took).Round(time.Millisecond), slices.Max(k.took).Round(time.Millisecond))
	}
	tw.Flush()
}

// nodeFigures are one node agent's (ours or kubelet's) measured figures.
type nodeFigures struct {
	idle, loaded   mem
	cpu            time.Duration // over the idle minutes, 0 pods
	shims, loggers []mem         // with the pods up
}

// idleFor waits settle, then measures the CPU time process pid takes over
// idle, then its memory.
func (n *nodeFigures) idleFor(b *testing.B, pid int, settle, idle time.Duration) {
	b.Helper()
	time.Sleep(settle)
	t0 := cpuTime(b, pid)
	time.Sleep(idle)
	n.cpu = cpuTime(b, pid) - t0
	n.idle = memOf(b, pid)
}

// startBenchKubelet starts a containerd with CRI (the sandbox image and
// busybox from hc's registry) and an upstream kubelet on it, registered with
// hc's control plane. They run in an Env of their own (one Env holds one
// containerd), closed when b ends, before hc's.
func startBenchKubelet(ctx context.Context, b *testing.B, hc *harness.Cluster) (*harness.Kubelet, *harness.Containerd) {
	b.Helper()
	env := harness.New(b)
	hosts, err := harness.PlainHTTPHosts(filepath.Join(env.Dir, "registries"), hc.Registry.Host)
	if err != nil {
		b.Fatal(err)
	}
	pause := hc.Registry.Host + "/feather/pause:bench"
	tarball := filepath.Join(b.TempDir(), "pause.tar")
	if err := harness.WritePauseImage(tarball, "docker.io/feather/pause:bench"); err != nil {
		b.Fatal(err)
	}
	if err := hc.Containerd.Push(ctx, tarball, "docker.io/feather/pause:bench", pause); err != nil {
		b.Fatal(err)
	}
	network := env.CNINetwork()
	ctrd := env.StartContainerd(harness.ContainerdOptions{CRI: &harness.CRIOptions{
		Runtimes: map[string]string{"osv": osvRuntime}, Network: network, SandboxImage: pause, RegistryConfigDir: hosts}})
	return env.StartKubelet(hc.ControlPlane, ctrd, network, ""), ctrd
}

// runDeployment creates Deployment name with n replicas of spec and waits
// until all are available.
func runDeployment(ctx context.Context, b *testing.B, c *cluster, name string, n int32, spec corev1.PodSpec) {
	b.Helper()
	if _, err := c.kube.AppsV1().Deployments("default").Create(ctx, deployment(name, n, spec), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, fmt.Sprintf("%d pods of %s available", n, name), 4*time.Minute, func(ctx context.Context) (bool, error) {
		got, err := c.kube.AppsV1().Deployments("default").Get(ctx, name, metav1.GetOptions{})
		return err == nil && got.Status.AvailableReplicas == n, err
	})
}

// procsOf returns the live processes running exe whose command line holds
// marker ("" for all).
func procsOf(b testing.TB, exe, marker string) []leak.Proc {
	b.Helper()
	procs, err := leak.Named(exe)
	if err != nil {
		b.Fatal(err)
	}
	return slices.DeleteFunc(procs, func(p leak.Proc) bool { return !strings.Contains(p.Cmdline, marker) })
}

// memOfAll returns the memory of each process procsOf finds.
func memOfAll(b testing.TB, exe, marker string) []mem {
	b.Helper()
	var ms []mem
	for _, p := range procsOf(b, exe, marker) {
		ms = append(ms, memOf(b, p.Pid))
	}
	return ms
}

// shmemOf is process pid's resident shared memory (RssShmem, KiB): a VM's
// guest RAM, which is a memfd.
func shmemOf(b *testing.B, pid int) int64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "RssShmem:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
}

// meanOf is the mean of field over ms, in KiB (0 for none).
func meanOf(ms []mem, field func(mem) int64) int64 {
	if len(ms) == 0 {
		return 0
	}
	var sum int64
	for _, m := range ms {
		sum += field(m)
	}
	return sum / int64(len(ms))
}

// kib turns KiB into MiB.
func kib(v int64) float64 { return float64(v) / 1024 }

// timeToRunning creates a pod named name with spec and returns the time from
// the Create call to the watch's first sight of it Running; then it deletes
// the pod and waits until it is gone.
func timeToRunning(ctx context.Context, b *testing.B, c *cluster, name string, spec corev1.PodSpec) time.Duration {
	b.Helper()
	pods := c.kube.CoreV1().Pods("default")
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var took time.Duration
	timeout := time.After(2 * time.Minute)
	for took == 0 {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("pod %s: watch closed", name)
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Status.Phase == corev1.PodRunning {
				took = time.Since(start)
			} else if ok && (p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded) {
				b.Fatalf("pod %s: %s: %+v", name, p.Status.Phase, p.Status.ContainerStatuses)
			}
		case <-timeout:
			b.Fatalf("pod %s: not Running after 2m; agent log:\n%s", name, c.agent.Log(30))
		}
	}
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))}); err != nil {
		b.Fatal(err)
	}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("pod %s: watch closed", name)
			}
			if ev.Type == watch.Deleted {
				return took
			}
		case <-timeout:
			b.Fatalf("pod %s: not deleted after 2m", name)
		}
	}
}

// cpuTime is the user and system CPU time process pid has used.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15, in clock ticks (USER_HZ,
	// 100 on Linux).
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// exeMiB is the size of process pid's executable.
func exeMiB(b *testing.B, pid int) string {
	b.Helper()
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20))
}
