package stats

import (
	"fmt"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// usage is what the stats summary takes from a cgroup.
type usage struct {
	// cpuNs is the CPU time used, in nanoseconds (cumulative).
	cpuNs uint64
	// mem is memory usage, workingSet usage less inactive file pages (as
	// cadvisor computes it), rss the anonymous memory.
	mem, workingSet, rss    uint64
	pageFaults, majorFaults uint64
	// limit is the memory limit, 0 for none.
	limit uint64
	// pids is the number of processes (tasks) in the cgroup.
	pids uint64
}

// noLimit is the smallest limit that means "none": cgroup v1 reports
// PAGE_COUNTER_MAX pages (9223372036854771712), v2 "max" as MaxUint64.
const noLimit = uint64(1) << 62

// decode reads the cgroups v1 or v2 Metrics in a containerd task's metrics.
func decode(data *anypb.Any) (usage, error) {
	if data == nil {
		return usage{}, fmt.Errorf("no metrics")
	}
	m, err := typeurl.UnmarshalAny(data)
	if err != nil {
		return usage{}, fmt.Errorf("decode metrics %s: %w", data.GetTypeUrl(), err)
	}
	var u usage
	switch m := m.(type) {
	case *v1.Metrics:
		if c := m.GetCPU().GetUsage(); c != nil {
			u.cpuNs = c.Total
		}
		if mem := m.GetMemory(); mem != nil {
			u.mem = mem.GetUsage().GetUsage()
			u.workingSet = sub(u.mem, mem.TotalInactiveFile)
			u.rss = mem.TotalRSS
			u.pageFaults, u.majorFaults = mem.TotalPgFault, mem.TotalPgMajFault
			u.limit = mem.GetUsage().GetLimit()
		}
		u.pids = m.GetPids().GetCurrent()
	case *v2.Metrics:
		u.cpuNs = m.GetCPU().GetUsageUsec() * 1000
		if mem := m.GetMemory(); mem != nil {
			u.mem = mem.Usage
			u.workingSet = sub(u.mem, mem.InactiveFile)
			u.rss = mem.Anon
			u.pageFaults, u.majorFaults = mem.Pgfault, mem.Pgmajfault
			u.limit = mem.UsageLimit
		}
		u.pids = m.GetPids().GetCurrent()
	default:
		return usage{}, fmt.Errorf("metrics of type %T: neither cgroups v1 nor v2", m)
	}
	if u.limit >= noLimit {
		u.limit = 0
	}
	return u, nil
}

// sub is a-b, or 0 when b > a.
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
