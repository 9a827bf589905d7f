package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
//
// With FEATHER_BENCH_PROFILE=DIR the agent runs with --profiling and a CPU
// profile of each idle phase is written to DIR/agent-probes-N.pprof (`go tool
// pprof -top _output/bin/feather DIR/agent-probes-1.pprof`); profiling adds
// a little to the CPU it measures.
func BenchmarkAgentProbes(b *testing.B) {
	profDir := os.Getenv("FEATHER_BENCH_PROFILE")
	args := []string{"--log-level", "info"}
	if profDir != "" {
		args = append(args, "--profiling")
	}
	c := newCluster(b, args...)
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
			var prof <-chan error
			if profDir != "" {
				prof = agentCPUProfile(ctx, b, c, idle, filepath.Join(profDir, fmt.Sprintf("agent-probes-%d.pprof", i)))
			}
			t0 := cpuTime(b, pid)
			time.Sleep(idle)
			cases[i].cpu = cpuTime(b, pid) - t0
			if prof != nil {
				if err := <-prof; err != nil {
					b.Fatal(err)
				}
			}
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

// agentCPUProfile takes a CPU profile of the agent (its --profiling handler,
// as the cluster admin) over d and writes it to path; the channel gets the
// outcome once it is written.
func agentCPUProfile(ctx context.Context, b *testing.B, c *cluster, d time.Duration, path string) <-chan error {
	b.Helper()
	cert, err := tls.X509KeyPair(c.cp.Admin.CertData, c.cp.Admin.KeyData)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true}}} //nolint:gosec // a benchmark on loopback
	url := fmt.Sprintf("https://127.0.0.1:%d/debug/pprof/profile?seconds=%d", c.agent.Port, int(d.Seconds()))
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("agent CPU profile: %w", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("agent CPU profile: %v %s: %.300s", err, resp.Status, body)
			}
			return os.WriteFile(path, body, 0o644)
		}()
	}()
	return done
}
