package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkAgentStats prints what stats cost the agent: its CPU over two
// idle minutes with 30 container pods, without and then with metrics-server
// scraping it every 15 s, and the latency of one /stats/summary with those 30
// pods (median of 20). The agent runs with --stats-max-age 0, so that every
// request gathers (metrics-server's 15 s scrapes gather every time with the
// default 10 s as well).
func BenchmarkAgentStats(b *testing.B) {
	c := newCluster(b, "--log-level", "info", "--stats-max-age", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pid := c.agent.Pid()
	const (
		settle  = 20 * time.Second
		idleCPU = 2 * time.Minute
		busy    = 30
		samples = 20
	)
	var without, with time.Duration
	var took []time.Duration
	var size int
	for b.Loop() {
		d := deployment("idle", busy, podTemplate(corev1.Container{Name: "c", Image: c.busybox, Command: []string{"sleep", "3600"}}))
		if _, err := c.kube.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitFor(b, fmt.Sprintf("%d pods available", busy), 4*time.Minute, func(ctx context.Context) (bool, error) {
			got, err := c.kube.AppsV1().Deployments("default").Get(ctx, "idle", metav1.GetOptions{})
			return err == nil && got.Status.AvailableReplicas == busy, err
		})
		time.Sleep(settle)
		t0 := cpuTime(b, pid)
		time.Sleep(idleCPU)
		without = cpuTime(b, pid) - t0

		ms := c.env.StartMetricsServer(c.cp)
		time.Sleep(settle)
		t0 = cpuTime(b, pid)
		time.Sleep(idleCPU)
		with = cpuTime(b, pid) - t0
		ms.Stop()

		get := agentClient(b, c)
		for range samples {
			start := time.Now()
			n := get(ctx, "/stats/summary")
			took = append(took, time.Since(start))
			size = n
		}
		deleteAll(ctx, b, c)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(os.Stdout, "\nThe agent's CPU over %s idle with %d container pods, %s after they are up:\n", idleCPU, busy, settle)
	fmt.Fprintln(tw, "\tCPU\tof a core\t")
	fmt.Fprintf(tw, "without metrics-server\t%.2f s\t%.3f%%\t\n", without.Seconds(), 100*without.Seconds()/idleCPU.Seconds())
	fmt.Fprintf(tw, "metrics-server scraping every 15 s\t%.2f s\t%.3f%%\t\n", with.Seconds(), 100*with.Seconds()/idleCPU.Seconds())
	fmt.Fprintf(tw, "what scraping adds\t%.2f s\t%.3f%%\t\n", (with - without).Seconds(), 100*(with-without).Seconds()/idleCPU.Seconds())
	tw.Flush()
	fmt.Printf("One /stats/summary with %d pods (%d KiB of JSON), straight to the agent: median %s of %d\n", busy, size>>10, median(took), samples)
}

// agentClient returns a GET of the agent's kubelet API as the cluster admin
// (a client certificate), returning the size of the body.
func agentClient(b *testing.B, c *cluster) func(context.Context, string) int {
	cert, err := tls.X509KeyPair(c.cp.Admin.CertData, c.cp.Admin.KeyData)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true}}} //nolint:gosec // a benchmark on loopback; TestAgentStats goes through the API server
	return func(ctx context.Context, path string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", c.agent.Port, path), nil)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %v %s: %s", path, err, resp.Status, strings.TrimSpace(string(body)))
		}
		return len(body)
	}
}
