package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// BenchmarkPodChurn prints the time from creating a pod to the first sight,
// by a watch, of the Running status the agent publishes for it: for a lone
// pod (nothing else on the node, the previous one gone), and for each pod of
// a burst created while as many others are being deleted (their teardown, a
// grace period of 3 s that `sleep` ignores, spans the whole burst): the
// burst's p50 and p99 beside the lone pod's median. Container pods (busybox)
// and unikernel pods (the test guest, direct boot) alike; under TCG each
// booting VM takes a core for about a second, so the unikernel burst is
// smaller.
func BenchmarkPodChurn(b *testing.B) {
	// At info level, as an agent runs in production.
	c := newCluster(b, "--log-level", "info")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const runs = 5 // lone pods of each kind, after one that pulls the image
	type kind struct {
		name  string
		spec  corev1.PodSpec
		burst int // pods created, and as many deleted, at once
		lone  []time.Duration
		quiet []time.Duration // the pods to delete, created at once on an idle node
		took  []time.Duration
	}
	ctr := podTemplate(corev1.Container{Name: "c", Image: c.busybox, Command: []string{"sleep", "3600"}})
	uk := podTemplate(corev1.Container{Name: "uk", Image: c.unikernel, Args: []string{"/sleep", "3600"}})
	uk.RuntimeClassName = ptrTo("osv")
	kinds := []*kind{{name: "container pod", spec: ctr, burst: 20}, {name: "unikernel pod (direct boot)", spec: uk, burst: 4}}
	clock := watchRunning(ctx, b, c)
	for b.Loop() {
		for ki, k := range kinds {
			for n := range runs + 1 {
				name := fmt.Sprintf("lone-%d-%d", ki, n)
				d := clock.createAndWait(ctx, b, c, k.spec, name)
				if n > 0 {
					k.lone = append(k.lone, d)
				}
				deleteAll(ctx, b, c)
			}
			old := make([]string, k.burst)
			for i := range old {
				old[i] = fmt.Sprintf("old-%d-%d", ki, i)
			}
			k.quiet = clock.createAll(ctx, b, c, k.spec, old)
			var news []string
			for i := range k.burst {
				news = append(news, fmt.Sprintf("new-%d-%d", ki, i))
			}
			var wg sync.WaitGroup
			pods := c.kube.CoreV1().Pods("default")
			for _, name := range old {
				wg.Go(func() {
					if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
						b.Error(err)
					}
				})
			}
			k.took = clock.createAll(ctx, b, c, k.spec, news)
			wg.Wait()
			deleteAll(ctx, b, c)
		}
	}
	fmt.Fprintf(os.Stdout, "\nPod create → Running on the agent, seen by a watch (images already pulled; TCG unless /run/feather/accel says kvm):\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pod\tlone (median of 5)\tburst of N\tN at once, none deleted: p50 / p99\tN created while N deleted: p50\tp99\tp99 / lone\t")
	for _, k := range kinds {
		lone := quantile(k.lone, 0.5)
		p99 := quantile(k.took, 0.99)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s / %s\t%s\t%s\t%.1f\t\n", k.name, lone, k.burst,
			quantile(k.quiet, 0.5), quantile(k.quiet, 0.99), quantile(k.took, 0.5), p99, p99.Seconds()/lone.Seconds())
	}
	tw.Flush()
	clock.mu.Lock()
	fmt.Fprintf(os.Stdout, "Pods deleted whose last status in the API was phase Running: %d of %d.\n", clock.gone, clock.deleted)
	clock.mu.Unlock()
}

// quantile returns the q-quantile of ds by nearest rank (p99 of 20 is the
// largest), to the millisecond.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)].Round(time.Millisecond)
}

// runningClock watches the pods of namespace default and remembers when it
// first saw each one Running, and which ended instead.
type runningClock struct {
	mu      sync.Mutex
	running map[string]time.Time
	ended   map[string]string // name → phase and container statuses
	changed chan struct{}     // a value after each change; one waiter
	// deleted counts the pods deleted from the API, and gone those whose
	// last status there was still phase Running: the agent published no
	// terminal status before they went.
	deleted, gone int
}

// watchRunning starts a runningClock; it watches until ctx ends, watching
// anew from the last version seen if the API server closes its watch.
func watchRunning(ctx context.Context, b *testing.B, c *cluster) *runningClock {
	b.Helper()
	r := &runningClock{running: map[string]time.Time{}, ended: map[string]string{}, changed: make(chan struct{}, 1)}
	pods := c.kube.CoreV1().Pods("default")
	w, err := pods.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		version := ""
		for {
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				version = p.ResourceVersion
				if ev.Type == watch.Deleted {
					r.mu.Lock()
					r.deleted++
					if p.Status.Phase == corev1.PodRunning {
						r.gone++
					}
					r.mu.Unlock()
					continue
				}
				r.saw(p, time.Now())
			}
			if ctx.Err() != nil {
				return
			}
			if w, err = pods.Watch(ctx, metav1.ListOptions{ResourceVersion: version}); err != nil {
				if w, err = pods.Watch(ctx, metav1.ListOptions{}); err != nil {
					return // the waiters time out
				}
			}
		}
	}()
	return r
}

func (r *runningClock) saw(p *corev1.Pod, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch p.Status.Phase {
	case corev1.PodRunning:
		if _, ok := r.running[p.Name]; ok {
			return
		}
		r.running[p.Name] = at
	case corev1.PodFailed, corev1.PodSucceeded:
		r.ended[p.Name] = fmt.Sprintf("%s: %+v", p.Status.Phase, p.Status.ContainerStatuses)
	default:
		return
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// createAndWait creates pod name with spec and returns the time from the
// Create call to the watch's first sight of it Running.
func (r *runningClock) createAndWait(ctx context.Context, b *testing.B, c *cluster, spec corev1.PodSpec, name string) time.Duration {
	b.Helper()
	return r.createAll(ctx, b, c, spec, []string{name})[0]
}

// createAll creates pods names with spec at once and returns, for each, the
// time from its Create call to the watch's first sight of it Running.
func (r *runningClock) createAll(ctx context.Context, b *testing.B, c *cluster, spec corev1.PodSpec, names []string) []time.Duration {
	b.Helper()
	start := make([]time.Time, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			start[i] = time.Now()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
			if _, err := c.kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	timeout := time.NewTimer(3 * time.Minute)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		took := make([]time.Duration, 0, len(names))
		for i, name := range names {
			if why, ok := r.ended[name]; ok {
				r.mu.Unlock()
				b.Fatalf("pod %s ended instead of running: %s", name, why)
			}
			if at, ok := r.running[name]; ok {
				took = append(took, at.Sub(start[i]))
			}
		}
		r.mu.Unlock()
		if len(took) == len(names) {
			return took
		}
		select {
		case <-r.changed:
		case <-timeout.C:
			b.Fatalf("%d of %d pods Running after 3m; agent log:\n%s", len(took), len(names), c.agent.Log(40))
		case <-ctx.Done():
			b.Fatalf("%d of %d pods Running: %v", len(took), len(names), ctx.Err())
		}
	}
}
