package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/feather-edge/feather/test/harness"
)

// BenchmarkAgentIdle measures the agent's footprint alone, the first rows of
// BenchmarkAgent without the upstream kubelet, the unikernels or the start
// latencies (about 1 min instead of 7): RSS, PSS and anonymous memory idle
// with 0 pods and with 30 container pods, and the growth per pod.
func BenchmarkAgentIdle(b *testing.B) {
	env := harness.New(b)
	hc := env.StartCluster(harness.ClusterOptions{Agent: harness.AgentOptions{Args: []string{"--log-level", "info"}}})
	c := &cluster{env: env, cp: hc.ControlPlane, ctrd: hc.Containerd, agent: hc.Agent, kube: hc.Kube,
		busybox: hc.Busybox, unikernel: hc.Unikernel}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pid := c.agent.Pid()
	const (
		settle = 20 * time.Second // after Ready, and after the pods are up
		busy   = 30
	)
	ctr := podTemplate(corev1.Container{Name: "c", Image: c.busybox, Command: []string{"sleep", "3600"}})
	var idle, loaded mem
	for b.Loop() {
		time.Sleep(settle)
		idle = memOf(b, pid)
		runDeployment(ctx, b, c, "idle", busy, ctr)
		time.Sleep(settle)
		loaded = memOf(b, pid)
		deleteAll(ctx, b, c)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(os.Stdout, "\nThe agent (bin/feather, %s), idle %s after its node is Ready or its pods are up:\n", exeMiB(b, pid), settle)
	fmt.Fprintln(tw, "figure\t0 pods\t30 container pods\tper pod\t")
	for _, f := range []struct {
		name  string
		field func(mem) int64
	}{{"RSS", mem.rss}, {"PSS", mem.pss}, {"anon", mem.anon}} {
		fmt.Fprintf(tw, "%s\t%.2f MiB\t%.2f MiB\t%.0f KiB\t\n", f.name, kib(f.field(idle)), kib(f.field(loaded)),
			float64(f.field(loaded)-f.field(idle))/busy)
	}
	tw.Flush()
}
