package agent

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/log"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/feather-edge/feather/kubelet/podnet"
	"github.com/feather-edge/feather/kubelet/stats"
)

// newStats returns the collector behind /stats/summary and the metrics
// endpoints: pods from the provider, containers from containerd.
func newStats(cfg Config, cd *client.Client, pods func(context.Context) ([]*corev1.Pod, error)) *stats.Collector {
	nets := &podnet.Manager{Dir: filepath.Join(cfg.RunDir, "netns")}
	osv := cfg.Runtimes["osv"]
	return stats.New(stats.Config{
		NodeName: cfg.NodeName, Pods: pods,
		Runtime:  &stats.Containerd{Client: cd, Unikernel: func(rt string) bool { return osv != "" && rt == osv }},
		StateDir: cfg.StateDir, ImageFsDir: cfg.ImageFsDir, LogDir: cfg.LogDir,
		VolumesDir: filepath.Join(cfg.StateDir, "pods"), Bridge: cfg.CNIBridge, MaxAge: cfg.StatsMaxAge,
		SystemProcesses: func(ctx context.Context) map[string]int {
			procs := map[string]int{statsv1alpha1.SystemContainerKubelet: os.Getpid()}
			if pid, err := socketPeer(cfg.Containerd); err != nil {
				log.G(ctx).WithError(err).Info("stats: runtime system container left out")
			} else {
				procs[statsv1alpha1.SystemContainerRuntime] = pid
			}
			return procs
		},
		PodNetwork: func(_ context.Context, uid types.UID) ([]statsv1alpha1.InterfaceStats, error) {
			return stats.NetnsInterfaces(nets.Path(string(uid)))
		},
	})
}

// resourceMetrics serves /metrics/resource from the collector's summary; a
// summary that cannot be gathered still answers, with resource_scrape_error
// 1, as kubelet does.
func resourceMetrics(c *stats.Collector) func(context.Context) ([]*dto.MetricFamily, error) {
	return func(ctx context.Context) ([]*dto.MetricFamily, error) {
		s, err := c.Summary(ctx)
		if err != nil {
			log.G(ctx).WithError(err).Warn("resource metrics")
		}
		return stats.ResourceMetrics(s, err != nil), nil
	}
}

// cadvisorHandler serves /metrics/cadvisor: the per-container metrics of
// the same summary.
func cadvisorHandler(c *stats.Collector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.Summary(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeFamilies(w, stats.CadvisorMetrics(s))
	})
}

func writeFamilies(w http.ResponseWriter, mfs []*dto.MetricFamily) {
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	_, _ = w.Write(buf.Bytes())
}

// healthz answers "ok" as kubelet's /healthz does while the agent runs.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}
