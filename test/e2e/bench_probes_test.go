package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BenchmarkAgentProbes prints what probing costs the agent: its CPU time over
// two idle minutes and its memory with 30 container pods that each serve
// HTTP, without probes and then with an httpGet readiness probe and an exec
// liveness probe every 10 s, in the same run on the same node.
func BenchmarkAgentProbes(b *testing.B) {
	c := newCluster(b, "--log-level", "info")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pid := c.agent.Pid()
	const (
		pods   = 30
		settle = 20 * time.Second // after the pods are available: their starts are not counted
		idle   = 2 * time.Minute
	)
	serve := corev1.Container{Name: "c", Image: c.busybox,
		Command: sh("mkdir -p /w && echo ok > /w/index.html && exec httpd -f -p 8080 -h /w")}
	probed := serve
	probed.ReadinessProbe = &corev1.Probe{PeriodSeconds: 10, ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}}
	probed.LivenessProbe = &corev1.Probe{PeriodSeconds: 10, ProbeHandler: corev1.ProbeHandler{
		Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	cases := []struct {
		name string
		c    corev1.Container
		cpu  time.Duration
		m    mem
	}{{name: "without probes", c: serve}, {name: "httpGet readiness + exec liveness every 10 s", c: probed}}
	for b.Loop() {
		for i := range cases {
			name := fmt.Sprintf("probes-%d", i)
			runDeployment(ctx, b, c, name, pods, podTemplate(cases[i].c))
			time.Sleep(settle)
			t0 := cpuTime(b, pid)
			time.Sleep(idle)
			cases[i].cpu = cpuTime(b, pid) - t0
			cases[i].m = memOf(b, pid)
			deleteAll(ctx, b, c)
		}
	}
	fmt.Fprintf(os.Stdout, "\nThe agent with %d container pods serving HTTP, over %s idle after they are available:\n", pods, idle)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pods\tagent CPU (% of a core)\tRSS\tanon\t")
	for _, k := range cases {
		fmt.Fprintf(tw, "%s\t%.3f\t%.1f MiB\t%.1f MiB\t\n", k.name, 100*k.cpu.Seconds()/idle.Seconds(), kib(k.m.RSS), kib(k.m.Anon))
	}
	fmt.Fprintf(tw, "probes' cost\t%.3f\t%+.1f MiB\t%+.1f MiB\t\n", 100*(cases[1].cpu-cases[0].cpu).Seconds()/idle.Seconds(),
		kib(cases[1].m.RSS-cases[0].m.RSS), kib(cases[1].m.Anon-cases[0].m.Anon))
	tw.Flush()
}
