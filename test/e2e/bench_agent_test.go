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

	"github.com/feather-edge/feather/test/leak"
)

// BenchmarkAgent prints the agent's own figures: its memory with no pods and
// with 30 container pods, its CPU time over two idle minutes, and the time
// from creating a pod to seeing it Running, for a container pod and a
// unikernel pod (direct boot) side by side.
func BenchmarkAgent(b *testing.B) {
	// At info level, as an agent runs in production: the harness's default
	// debug level logs every sync.
	c := newCluster(b, "--log-level", "info")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pid := c.agent.Pid()
	const (
		settle  = 20 * time.Second // after Ready, and after the pods are up
		idleCPU = 2 * time.Minute
		runs    = 5
		busy    = 30 // container pods: 30 TCG VMs would not fit 2 cores
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
	var idle, loaded mem
	var cpu time.Duration
	var logger []mem
	loggerExe := "-"
	for b.Loop() {
		time.Sleep(settle)
		t0 := cpuTime(b, pid)
		time.Sleep(idleCPU)
		cpu = cpuTime(b, pid) - t0
		idle = memOf(b, pid)

		// The first pod of each kind pulls its image; it is not counted.
		for _, k := range kinds {
			for n := range runs + 1 {
				d := timeToRunning(ctx, b, c, fmt.Sprintf("start-%d-%d", len(k.took), n), k.spec)
				if n > 0 {
					k.took = append(k.took, d)
				}
			}
		}

		d := deployment("idle", busy, ctr)
		if _, err := c.kube.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitFor(b, fmt.Sprintf("%d pods available", busy), 4*time.Minute, func(ctx context.Context) (bool, error) {
			got, err := c.kube.AppsV1().Deployments("default").Get(ctx, "idle", metav1.GetOptions{})
			return err == nil && got.Status.AvailableReplicas == busy, err
		})
		time.Sleep(settle)
		loaded = memOf(b, pid)
		// Each container's logger: feather-cri-log, or the agent's own
		// binary where that is not installed.
		procs, err := leak.Named("feather-cri-log", "feather")
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range procs {
			if exe, _, _ := strings.Cut(p.Cmdline, " cri-log "); exe != p.Cmdline {
				logger = append(logger, memOf(b, p.Pid))
				loggerExe = filepath.Base(exe)
			}
		}
		deleteAll(ctx, b, c)
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(os.Stdout, "\nThe agent (bin/feather, %s), idle %s after its node is Ready or its pods are up:\n", exeMiB(b, pid), settle)
	fmt.Fprintln(tw, "agent\tRSS\tPSS\tanon\t")
	fmt.Fprintf(tw, "idle, 0 pods\t%s\t%s\t%s\t\n", mib([]mem{idle}, mem.rss), mib([]mem{idle}, mem.pss), mib([]mem{idle}, mem.anon))
	fmt.Fprintf(tw, "idle, %d container pods\t%s\t%s\t%s\t\n", busy, mib([]mem{loaded}, mem.rss), mib([]mem{loaded}, mem.pss), mib([]mem{loaded}, mem.anon))
	if len(logger) > 0 {
		fmt.Fprintf(tw, "each container's logger, %s (mean of %d)\t%s\t%s\t%s\t\n", loggerExe, len(logger), mib(logger, mem.rss), mib(logger, mem.pss), mib(logger, mem.anon))
	}
	tw.Flush()
	fmt.Printf("CPU over %s idle with 0 pods: %.2f s, %.3f%% of a core\n", idleCPU, cpu.Seconds(), 100*cpu.Seconds()/idleCPU.Seconds())
	fmt.Fprintf(os.Stdout, "\nPod create → Running (median of %d, seen by a watch; images already pulled; TCG unless /run/feather/accel says kvm):\n", runs)
	fmt.Fprintln(tw, "pod\tcreate→Running\tmin\tmax\t")
	for _, k := range kinds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", k.name, median(k.took),
			slices.Min(k.took).Round(time.Millisecond), slices.Max(k.took).Round(time.Millisecond))
	}
	tw.Flush()
}

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
