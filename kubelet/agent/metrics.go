package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/feather-edge/feather/kubelet/pods"
)

// agentMetrics are the agent's own Prometheus metrics, served on /metrics:
// the process and the Go runtime, pods by phase, how long pods take to
// start, image pulls, and failed containerd calls.
type agentMetrics struct {
	reg        *prometheus.Registry
	podStart   prometheus.Histogram
	imagePull  *prometheus.HistogramVec
	containerd *prometheus.CounterVec
	vmBoot     *prometheus.HistogramVec

	proc string // procfs, where watchBoot finds QEMU's working directory

	mu   sync.Mutex
	seen map[types.UID]time.Time // pods seen, not yet running
	done map[types.UID]bool      // pods whose start was observed
}

// newAgentMetrics registers the metrics; pods lists the node's pods when
// /metrics is scraped (pods by phase are counted then, not kept).
func newAgentMetrics(list func(context.Context) ([]*corev1.Pod, error)) *agentMetrics {
	m := &agentMetrics{reg: prometheus.NewRegistry(), proc: "/proc", seen: map[types.UID]time.Time{}, done: map[types.UID]bool{},
		podStart: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "feather_pod_start_duration_seconds",
			Help:    "Duration in seconds from the agent seeing a pod for the first time to the pod running (kubelet_pod_start_duration_seconds)",
			Buckets: []float64{0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600}}),
		imagePull: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "feather_image_pull_duration_seconds",
			Help:    "Duration in seconds of image pulls, by result (success, error)",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}}, []string{"result"}),
		containerd: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "feather_containerd_errors_total",
			Help: "containerd API calls that failed, by method and gRPC code"}, []string{"method", "code"}),
		vmBoot: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "feather_vm_boot_duration_seconds",
			Help:    "Duration in seconds from a unikernel task's start to its program's (as the OSv shim measured it), by boot mode (direct, disk) and accelerator (kvm, tcg)",
			Buckets: []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 30, 60}}, []string{"mode", "accel"}),
	}
	m.reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector(),
		m.podStart, m.imagePull, m.containerd, m.vmBoot, phaseCollector{list})
	return m
}

func (m *agentMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// pullObserved records an image pull.
func (m *agentMetrics) pullObserved(d time.Duration, err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	m.imagePull.WithLabelValues(result).Observe(d.Seconds())
}

// bootPoll is how often watchBoot looks for the shim's boot record, and
// bootWatch how long at most.
const (
	bootPoll  = 100 * time.Millisecond
	bootWatch = 10 * time.Minute
)

// vmBootFile is the OSv shim's record of a VM's boot, in QEMU's working
// directory (shim-osv/vm.BootFile), written once the program started.
const vmBootFile = "boot.json"

// watchBoot observes the boot of the VM whose QEMU is pid, from the shim's
// record of it: it polls for the record until it is there, QEMU is gone,
// bootWatch passed or ctx ended. A boot that never reaches the program is
// not observed.
func (m *agentMetrics) watchBoot(ctx context.Context, pid uint32) {
	dir := filepath.Join(m.proc, strconv.Itoa(int(pid)), "cwd")
	t := time.NewTicker(bootPoll)
	defer t.Stop()
	deadline := time.Now().Add(bootWatch)
	for {
		data, err := os.ReadFile(filepath.Join(dir, vmBootFile))
		if err == nil {
			var b struct {
				Mode    string  `json:"mode"`
				Accel   string  `json:"accel"`
				Seconds float64 `json:"seconds"`
			}
			if err := json.Unmarshal(data, &b); err != nil || b.Mode == "" {
				log.G(ctx).WithError(err).WithField("pid", pid).Warn("vm boot record unreadable")
				return
			}
			m.vmBoot.WithLabelValues(b.Mode, b.Accel).Observe(b.Seconds)
			return
		}
		if _, err := os.Stat(dir); err != nil || time.Now().After(deadline) {
			return // QEMU exited (or was never this VM's): no boot to observe
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// podSeen notes when the agent first got pod.
func (m *agentMetrics) podSeen(pod *corev1.Pod, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.seen[pod.UID]; !ok && !m.done[pod.UID] {
		m.seen[pod.UID] = now
	}
}

// podStatus observes the start duration of a pod that runs for the first
// time; pods recovered after a restart were not seen, so are not counted.
func (m *agentMetrics) podStatus(pod *corev1.Pod, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch pod.Status.Phase {
	case corev1.PodRunning:
		if at, ok := m.seen[pod.UID]; ok {
			m.podStart.Observe(now.Sub(at).Seconds())
			delete(m.seen, pod.UID)
			m.done[pod.UID] = true
		}
	case corev1.PodSucceeded, corev1.PodFailed:
		delete(m.seen, pod.UID)
	}
}

// podGone forgets pod.
func (m *agentMetrics) podGone(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.seen, uid)
	delete(m.done, uid)
}

// interceptors count containerd calls that fail (a missing object is an
// answer, not a failure).
func (m *agentMetrics) interceptors() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(unaryOf(m)),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
			streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			m.countCall(method, err)
			return s, err
		}),
	}
}

func unaryOf(m *agentMetrics) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		m.countCall(method, err)
		return err
	}
}

func (m *agentMetrics) countCall(method string, err error) {
	if err == nil {
		return
	}
	code := status.Code(err)
	if code == codes.NotFound || code == codes.Canceled {
		return
	}
	m.containerd.WithLabelValues(strings.TrimPrefix(method, "/"), code.String()).Inc()
}

// phaseCollector counts the node's pods by phase when scraped.
type phaseCollector struct {
	list func(context.Context) ([]*corev1.Pod, error)
}

var podsDesc = prometheus.NewDesc("feather_pods", "Pods on the node, by phase", []string{"phase"}, nil)

func (c phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- podsDesc }

func (c phaseCollector) Collect(ch chan<- prometheus.Metric) {
	pods, err := c.list(context.Background())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(podsDesc, err)
		return
	}
	n := map[corev1.PodPhase]int{}
	for _, p := range pods {
		ph := p.Status.Phase
		if ph == "" {
			ph = corev1.PodPending
		}
		n[ph]++
	}
	for _, ph := range []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown} {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n[ph]), string(ph))
	}
}

// measured wraps the pods provider to time pod starts.
type measured struct {
	*pods.Provider
	m *agentMetrics
}

func (p measured) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p.m.podSeen(pod, time.Now())
	return p.Provider.CreatePod(ctx, pod)
}

func (p measured) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.m.podGone(pod.UID)
	return p.Provider.DeletePod(ctx, pod)
}

func (p measured) NotifyPods(ctx context.Context, cb func(*corev1.Pod)) {
	p.Provider.NotifyPods(ctx, func(pod *corev1.Pod) {
		p.m.podStatus(pod, time.Now())
		cb(pod)
	})
}
