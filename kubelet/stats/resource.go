package stats

import (
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// families builds metric families in a fixed order.
type families struct {
	order []string
	by    map[string]*dto.MetricFamily
}

func (f *families) add(name, help string, typ dto.MetricType, v float64, t *metav1.Time, labels ...string) {
	if f.by == nil {
		f.by = map[string]*dto.MetricFamily{}
	}
	mf, ok := f.by[name]
	if !ok {
		mf = &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: typ.Enum()}
		f.by[name] = mf
		f.order = append(f.order, name)
	}
	m := &dto.Metric{}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	switch typ {
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: proto.Float64(v)}
	default:
		m.Gauge = &dto.Gauge{Value: proto.Float64(v)}
	}
	if t != nil && !t.IsZero() {
		m.TimestampMs = proto.Int64(t.UnixMilli())
	}
	mf.Metric = append(mf.Metric, m)
}

// declare adds a family with no samples yet, fixing its place in the
// output.
func (f *families) declare(name, help string, typ dto.MetricType) {
	if f.by == nil {
		f.by = map[string]*dto.MetricFamily{}
	}
	if _, ok := f.by[name]; !ok {
		f.by[name] = &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: typ.Enum()}
		f.order = append(f.order, name)
	}
}

func (f *families) list() []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(f.order))
	for _, n := range f.order {
		if len(f.by[n].Metric) > 0 { // the text format has no empty family
			out = append(out, f.by[n])
		}
	}
	return out
}

const (
	counter = dto.MetricType_COUNTER
	gauge   = dto.MetricType_GAUGE
)

// Help texts of kubelet's resource metrics.
const (
	helpNodeCPU   = "Cumulative cpu time consumed by the node in core-seconds"
	helpNodeMem   = "Current working set of the node in bytes"
	helpCtrCPU    = "Cumulative cpu time consumed by the container in core-seconds"
	helpCtrMem    = "Current working set of the container in bytes"
	helpCtrStart  = "Start time of the container since unix epoch in seconds"
	helpPodCPU    = "Cumulative cpu time consumed by the pod in core-seconds"
	helpPodMem    = "Current working set of the pod in bytes"
	helpScrapeErr = "1 if there was an error while getting container metrics, 0 otherwise"
)

// ResourceMetrics returns the metrics of kubelet's /metrics/resource, which
// metrics-server scrapes, for summary s; failed is whether gathering it
// failed (resource_scrape_error). Samples carry the time they were read.
func ResourceMetrics(s *statsv1alpha1.Summary, failed bool) []*dto.MetricFamily {
	var f families
	f.declare("node_cpu_usage_seconds_total", helpNodeCPU, counter)
	f.declare("node_memory_working_set_bytes", helpNodeMem, gauge)
	f.declare("container_cpu_usage_seconds_total", helpCtrCPU, counter)
	f.declare("container_memory_working_set_bytes", helpCtrMem, gauge)
	f.declare("container_start_time_seconds", helpCtrStart, gauge)
	f.declare("pod_cpu_usage_seconds_total", helpPodCPU, counter)
	f.declare("pod_memory_working_set_bytes", helpPodMem, gauge)
	errv := 0.0
	if failed {
		errv = 1
	}
	f.declare("resource_scrape_error", helpScrapeErr, gauge)
	if s != nil {
		if c := s.Node.CPU; c != nil && c.UsageCoreNanoSeconds != nil {
			f.add("node_cpu_usage_seconds_total", helpNodeCPU, counter, float64(*c.UsageCoreNanoSeconds)/1e9, &c.Time)
		}
		if m := s.Node.Memory; m != nil && m.WorkingSetBytes != nil {
			f.add("node_memory_working_set_bytes", helpNodeMem, gauge, float64(*m.WorkingSetBytes), &m.Time)
		}
		for _, p := range s.Pods {
			for _, c := range p.Containers {
				l := []string{"container", c.Name, "namespace", p.PodRef.Namespace, "pod", p.PodRef.Name}
				if c.CPU != nil && c.CPU.UsageCoreNanoSeconds != nil {
					f.add("container_cpu_usage_seconds_total", helpCtrCPU, counter, float64(*c.CPU.UsageCoreNanoSeconds)/1e9, &c.CPU.Time, l...)
				}
				if c.Memory != nil && c.Memory.WorkingSetBytes != nil {
					f.add("container_memory_working_set_bytes", helpCtrMem, gauge, float64(*c.Memory.WorkingSetBytes), &c.Memory.Time, l...)
				}
				if !c.StartTime.IsZero() {
					f.add("container_start_time_seconds", helpCtrStart, gauge, float64(c.StartTime.UnixNano())/1e9, nil, l...)
				}
			}
			l := []string{"namespace", p.PodRef.Namespace, "pod", p.PodRef.Name}
			if p.CPU != nil && p.CPU.UsageCoreNanoSeconds != nil {
				f.add("pod_cpu_usage_seconds_total", helpPodCPU, counter, float64(*p.CPU.UsageCoreNanoSeconds)/1e9, &p.CPU.Time, l...)
			}
			if p.Memory != nil && p.Memory.WorkingSetBytes != nil {
				f.add("pod_memory_working_set_bytes", helpPodMem, gauge, float64(*p.Memory.WorkingSetBytes), &p.Memory.Time, l...)
			}
		}
	}
	f.add("resource_scrape_error", helpScrapeErr, gauge, errv, nil)
	return f.list()
}

// CadvisorMetrics returns the per-container metrics of kubelet's
// /metrics/cadvisor that the summary holds (cadvisor's names and labels:
// container, pod, namespace; interface for the network), from the same
// figures.
func CadvisorMetrics(s *statsv1alpha1.Summary) []*dto.MetricFamily {
	var f families
	for _, p := range s.Pods {
		for _, c := range p.Containers {
			l := []string{"container", c.Name, "namespace", p.PodRef.Namespace, "pod", p.PodRef.Name}
			if c.CPU != nil && c.CPU.UsageCoreNanoSeconds != nil {
				f.add("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter,
					float64(*c.CPU.UsageCoreNanoSeconds)/1e9, &c.CPU.Time, l...)
			}
			if m := c.Memory; m != nil {
				for _, x := range []struct {
					name, help string
					v          *uint64
				}{
					{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", m.UsageBytes},
					{"container_memory_working_set_bytes", "Current working set in bytes.", m.WorkingSetBytes},
					{"container_memory_rss", "Size of RSS in bytes.", m.RSSBytes},
				} {
					if x.v != nil {
						f.add(x.name, x.help, gauge, float64(*x.v), &m.Time, l...)
					}
				}
			}
			if fs := c.Rootfs; fs != nil && fs.UsedBytes != nil {
				f.add("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge,
					float64(*fs.UsedBytes), &fs.Time, l...)
			}
			if !c.StartTime.IsZero() {
				f.add("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge,
					float64(c.StartTime.Unix()), nil, l...)
			}
			for _, m := range c.UserDefinedMetrics {
				switch m.Name {
				case MetricGuestMemory:
					f.add("feather_guest_memory_bytes", "A unikernel's RAM as its guest has it (QEMU's balloon).", gauge, m.Value, &m.Time, l...)
				case MetricGuestTouched:
					f.add("feather_guest_memory_touched_bytes", "A unikernel's guest RAM resident on the host (touched by the guest).", gauge, m.Value, &m.Time, l...)
				}
			}
		}
		if n := p.Network; n != nil {
			for _, i := range n.Interfaces {
				l := []string{"interface", i.Name, "namespace", p.PodRef.Namespace, "pod", p.PodRef.Name}
				if i.RxBytes != nil {
					f.add("container_network_receive_bytes_total", "Cumulative count of bytes received", counter, float64(*i.RxBytes), &n.Time, l...)
				}
				if i.TxBytes != nil {
					f.add("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", counter, float64(*i.TxBytes), &n.Time, l...)
				}
			}
		}
	}
	return f.list()
}
