package stats

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

func encode(t *testing.T, s *statsv1alpha1.Summary, failed bool, cadvisor bool) string {
	t.Helper()
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	mfs := ResourceMetrics(s, failed)
	if cadvisor {
		mfs = CadvisorMetrics(s)
	}
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

func TestResourceMetrics(t *testing.T) {
	at := metav1.NewTime(time.UnixMilli(1700000000123))
	start := metav1.NewTime(time.Unix(1600000000, 0))
	s := &statsv1alpha1.Summary{
		Node: statsv1alpha1.NodeStats{CPU: &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: ptr(uint64(2.5e9))},
			Memory: &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: ptr(uint64(1 << 30))}},
		Pods: []statsv1alpha1.PodStats{{
			PodRef: statsv1alpha1.PodReference{Namespace: "default", Name: "web", UID: "u"},
			CPU:    &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: ptr(uint64(1e9))},
			Memory: &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: ptr(uint64(100 << 20))},
			Network: &statsv1alpha1.NetworkStats{Time: at, Interfaces: []statsv1alpha1.InterfaceStats{
				{Name: "eth0", RxBytes: ptr(uint64(7)), TxBytes: ptr(uint64(9))}}},
			Containers: []statsv1alpha1.ContainerStats{{Name: "app", StartTime: start,
				CPU:                &statsv1alpha1.CPUStats{Time: at, UsageCoreNanoSeconds: ptr(uint64(1e9))},
				Memory:             &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: ptr(uint64(100 << 20)), UsageBytes: ptr(uint64(120 << 20))},
				UserDefinedMetrics: GuestMemory{Bytes: 128 << 20, Touched: 64 << 20}.userDefined(at)}},
		}},
	}
	got := encode(t, s, false, false)
	for _, want := range []string{
		"# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total 2.5 1700000000123\n",
		"node_memory_working_set_bytes 1.073741824e+09 1700000000123\n",
		`container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 1 1700000000123` + "\n",
		`container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 1.048576e+08 1700000000123` + "\n",
		`container_start_time_seconds{container="app",namespace="default",pod="web"} 1.6e+09` + "\n",
		`pod_cpu_usage_seconds_total{namespace="default",pod="web"} 1 1700000000123` + "\n",
		`pod_memory_working_set_bytes{namespace="default",pod="web"} 1.048576e+08 1700000000123` + "\n",
		"resource_scrape_error 0\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("resource metrics lack %q:\n%s", want, got)
		}
	}
	if got := encode(t, nil, true, false); !strings.Contains(got, "resource_scrape_error 1\n") ||
		strings.Contains(got, "container_cpu_usage_seconds_total") {
		t.Errorf("failed scrape:\n%s", got)
	}
	cad := encode(t, s, false, true)
	for _, want := range []string{
		`container_memory_usage_bytes{container="app",namespace="default",pod="web"} 1.2582912e+08 1700000000123`,
		`container_network_transmit_bytes_total{interface="eth0",namespace="default",pod="web"} 9 1700000000123`,
		`feather_guest_memory_bytes{container="app",namespace="default",pod="web"} 1.34217728e+08 1700000000123`,
		`feather_guest_memory_touched_bytes{container="app",namespace="default",pod="web"} 6.7108864e+07 1700000000123`,
	} {
		if !strings.Contains(cad, want) {
			t.Errorf("cadvisor metrics lack %q:\n%s", want, cad)
		}
	}
}
