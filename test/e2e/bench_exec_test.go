package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkAgentExec prints the round trip of `kubectl exec POD -- true`
// through the API server and the agent's kubelet API, the way a user runs
// it (a fresh kubectl each time, so its start and its TLS handshakes count),
// beside `kubectl get pod` as the baseline of a kubectl run that does not
// reach the node.
func BenchmarkAgentExec(b *testing.B) {
	c := newCluster(b, "--log-level", "info")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const runs = 20
	pod := newPod("exec", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: []string{"sleep", "3600"}})
	if _, err := c.kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "pod exec Running", 2*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := c.kube.CoreV1().Pods("default").Get(ctx, "exec", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	b.Cleanup(func() { deleteAll(context.Background(), b, c) })
	// The kubelet API serves once the node's serving certificate is
	// approved and issued.
	waitFor(b, "the kubelet API serving", 2*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := c.kubectl(ctx, b, "exec", "exec", "--", "true")
		return err == nil, nil
	})
	timed := func(args ...string) []time.Duration {
		var took []time.Duration
		for range runs + 1 {
			t0 := time.Now()
			if out, err := c.kubectl(ctx, b, args...); err != nil {
				b.Fatalf("kubectl %v: %v: %s", args, err, out)
			}
			took = append(took, time.Since(t0))
		}
		return took[1:] // the first run warms caches
	}
	var exec, get []time.Duration
	for b.Loop() {
		exec = timed("exec", "exec", "--", "true")
		get = timed("get", "pod", "exec")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Printf("\nkubectl round trips (median of %d, a fresh kubectl each):\n", runs)
	fmt.Fprintln(tw, "command\tmedian\tmin\tmax\t")
	for _, r := range []struct {
		name string
		took []time.Duration
	}{{"kubectl exec POD -- true", exec}, {"kubectl get pod POD (baseline)", get}} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.name, median(r.took), slices.Min(r.took).Round(time.Millisecond), slices.Max(r.took).Round(time.Millisecond))
	}
	tw.Flush()
}
