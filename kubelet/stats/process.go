package stats

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// processUsage reads process pid's figures from procfs at proc: CPU time
// (all its threads, user and system), memory (its resident set as usage
// and working set, its anonymous pages as RSS), page faults, and when it
// started, in clock ticks after boot.
func processUsage(proc string, pid int) (usage, uint64, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	data, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return usage{}, 0, err
	}
	// pid (comm) state ppid …: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return usage{}, 0, fmt.Errorf("%s/stat: no command", dir)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return usage{}, 0, fmt.Errorf("%s/stat: %d fields", dir, len(f)+2)
	}
	// f[0] is field 3 (state): minflt 10, majflt 12, utime 14, stime 15,
	// starttime 22.
	n := map[int]uint64{}
	for _, field := range []int{10, 12, 14, 15, 22} {
		v, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return usage{}, 0, fmt.Errorf("%s/stat field %d: %w", dir, field, err)
		}
		n[field] = v
	}
	u := usage{cpuNs: (n[14] + n[15]) * (1e9 / userHZ), pageFaults: n[10] + n[12], majorFaults: n[12], pids: 1}
	st, err := os.Open(filepath.Join(dir, "status"))
	if err != nil {
		return usage{}, 0, err
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			u.mem, u.workingSet = kb<<10, kb<<10
		case "RssAnon":
			u.rss = kb << 10
		case "Threads":
			u.pids = kb // not kB: a count
		}
	}
	return u, n[22], sc.Err()
}

// systemContainers makes the node's system containers as kubelet names
// them: "kubelet" and "runtime" are the processes SystemProcesses names
// (the agent, containerd), "pods" the pods' figures summed (Feather has no
// cgroup that holds every pod).
func (c *Collector) systemContainers(ctx context.Context, pods []statsv1alpha1.PodStats, now metav1.Time,
	sample func(string, cpuSample) *uint64) []statsv1alpha1.ContainerStats {
	var out []statsv1alpha1.ContainerStats
	if c.cfg.SystemProcesses != nil {
		procs := c.cfg.SystemProcesses(ctx)
		boot := bootTime(c.cfg.Proc)
		for _, name := range []string{statsv1alpha1.SystemContainerKubelet, statsv1alpha1.SystemContainerRuntime} {
			pid, ok := procs[name]
			if !ok {
				continue
			}
			u, started, err := processUsage(c.cfg.Proc, pid)
			if err != nil {
				log.G(ctx).WithError(err).WithField("container", name).WithField("pid", pid).Info("stats: system container left out")
				continue
			}
			cs := statsv1alpha1.ContainerStats{Name: name, StartTime: metav1.NewTime(boot.Add(time.Duration(started) * (time.Second / userHZ))),
				CPU: &statsv1alpha1.CPUStats{Time: now, UsageCoreNanoSeconds: ptr(u.cpuNs),
					UsageNanoCores: sample("system/"+name, cpuSample{t: now.Time, ns: u.cpuNs})},
				Memory: memory(u, now)}
			out = append(out, cs)
		}
	}
	var u usage
	var cores uint64
	rated := false
	start := now
	for _, p := range pods {
		if !p.StartTime.IsZero() && p.StartTime.Before(&start) {
			start = p.StartTime
		}
		if p.CPU == nil || p.Memory == nil {
			continue
		}
		u.cpuNs += *p.CPU.UsageCoreNanoSeconds
		if r := p.CPU.UsageNanoCores; r != nil {
			cores += *r
			rated = true
		}
		u.mem += deref(p.Memory.UsageBytes)
		u.workingSet += deref(p.Memory.WorkingSetBytes)
		u.rss += deref(p.Memory.RSSBytes)
		u.pageFaults += deref(p.Memory.PageFaults)
		u.majorFaults += deref(p.Memory.MajorPageFaults)
	}
	cs := statsv1alpha1.ContainerStats{Name: statsv1alpha1.SystemContainerPods, StartTime: start,
		CPU: &statsv1alpha1.CPUStats{Time: now, UsageCoreNanoSeconds: ptr(u.cpuNs)}, Memory: memory(u, now)}
	if rated {
		cs.CPU.UsageNanoCores = ptr(cores)
	}
	return append(out, cs)
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}
