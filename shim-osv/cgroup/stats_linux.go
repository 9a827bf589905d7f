package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
)

// Stats returns the cgroup's metrics as the runc shim reports them for a
// task (and `ctr task metrics` and the agent read them): a cgroups v1
// *v1.Metrics or a cgroups v2 *v2.Metrics, the messages of containerd's
// cgroups library. A file a kernel does not have (no swap accounting, no
// PSI) leaves its fields zero.
//
// v1: CPU usage and throttling, memory (memory.stat, usage, swap, kernel
// and TCP entries, OOM control), pids and hugetlb; blkio and rdma are not
// read. v2: pids, CPU, memory, memory events, io, rdma, hugetlb and
// pressure, as the library reads them.
func (c *Cgroup) Stats() (proto.Message, error) {
	if c.unified {
		return statsV2(c.dirs[0])
	}
	m := &v1.Metrics{CPU: &v1.CPUStat{Usage: &v1.CPUUsage{}, Throttling: &v1.Throttle{}}}
	for i, mnt := range c.mounts {
		if err := statsV1(mnt, c.dirs[i], m); err != nil {
			return nil, fmt.Errorf("stats of cgroup %s: %w", c.dirs[i], err)
		}
	}
	return m, nil
}

// statsV1 reads the metrics of the controllers of hierarchy mnt from dir.
func statsV1(mnt Mount, dir string, m *v1.Metrics) error {
	if mnt.has("cpuacct") {
		u := m.CPU.Usage
		var err error
		if u.Total, err = readUint(filepath.Join(dir, "cpuacct.usage")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		kv, err := readKV(filepath.Join(dir, "cpuacct.stat"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// cpuacct.stat counts USER_HZ ticks (100 a second on Linux).
		u.User, u.Kernel = kv["user"]*1e9/100, kv["system"]*1e9/100
		if u.PerCPU, err = readUints(filepath.Join(dir, "cpuacct.usage_percpu")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if mnt.has("cpu") {
		kv, err := readKV(filepath.Join(dir, "cpu.stat"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		t := m.CPU.Throttling
		t.Periods, t.ThrottledPeriods, t.ThrottledTime = kv["nr_periods"], kv["nr_throttled"], kv["throttled_time"]
	}
	if mnt.has("memory") {
		if err := memoryV1(dir, m); err != nil {
			return err
		}
	}
	if mnt.has("pids") {
		cur, err := readUint(filepath.Join(dir, "pids.current"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		limit, err := readUint(filepath.Join(dir, "pids.max"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		m.Pids = &v1.PidsStat{Current: cur, Limit: limit}
	}
	if mnt.has("hugetlb") {
		for _, size := range hugePageSizes(dir, ".limit_in_bytes") {
			s := &v1.HugetlbStat{Pagesize: size}
			for _, f := range []struct {
				name string
				v    *uint64
			}{{"usage_in_bytes", &s.Usage}, {"max_usage_in_bytes", &s.Max}, {"failcnt", &s.Failcnt}} {
				v, err := readUint(filepath.Join(dir, "hugetlb."+size+"."+f.name))
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				*f.v = v
			}
			m.Hugetlb = append(m.Hugetlb, s)
		}
	}
	return nil
}

// memoryV1 reads a v1 memory cgroup's metrics.
func memoryV1(dir string, m *v1.Metrics) error {
	kv, err := readKV(filepath.Join(dir, "memory.stat"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	s := &v1.MemoryStat{
		Cache: kv["cache"], RSS: kv["rss"], RSSHuge: kv["rss_huge"], MappedFile: kv["mapped_file"],
		Dirty: kv["dirty"], Writeback: kv["writeback"], PgPgIn: kv["pgpgin"], PgPgOut: kv["pgpgout"],
		PgFault: kv["pgfault"], PgMajFault: kv["pgmajfault"], InactiveAnon: kv["inactive_anon"],
		ActiveAnon: kv["active_anon"], InactiveFile: kv["inactive_file"], ActiveFile: kv["active_file"],
		Unevictable: kv["unevictable"], HierarchicalMemoryLimit: kv["hierarchical_memory_limit"],
		HierarchicalSwapLimit: kv["hierarchical_memsw_limit"], TotalCache: kv["total_cache"],
		TotalRSS: kv["total_rss"], TotalRSSHuge: kv["total_rss_huge"], TotalMappedFile: kv["total_mapped_file"],
		TotalDirty: kv["total_dirty"], TotalWriteback: kv["total_writeback"], TotalPgPgIn: kv["total_pgpgin"],
		TotalPgPgOut: kv["total_pgpgout"], TotalPgFault: kv["total_pgfault"],
		TotalPgMajFault: kv["total_pgmajfault"], TotalInactiveAnon: kv["total_inactive_anon"],
		TotalActiveAnon: kv["total_active_anon"], TotalInactiveFile: kv["total_inactive_file"],
		TotalActiveFile: kv["total_active_file"], TotalUnevictable: kv["total_unevictable"],
		Usage: &v1.MemoryEntry{}, Swap: &v1.MemoryEntry{}, Kernel: &v1.MemoryEntry{}, KernelTCP: &v1.MemoryEntry{},
	}
	for _, e := range []struct {
		prefix string
		entry  *v1.MemoryEntry
	}{{"memory.", s.Usage}, {"memory.memsw.", s.Swap}, {"memory.kmem.", s.Kernel}, {"memory.kmem.tcp.", s.KernelTCP}} {
		for _, f := range []struct {
			name string
			v    *uint64
		}{{"usage_in_bytes", &e.entry.Usage}, {"max_usage_in_bytes", &e.entry.Max}, {"failcnt", &e.entry.Failcnt}, {"limit_in_bytes", &e.entry.Limit}} {
			v, err := readUint(filepath.Join(dir, e.prefix+f.name))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			*f.v = v
		}
	}
	m.Memory = s
	oom, err := readKV(filepath.Join(dir, "memory.oom_control"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err == nil {
		m.MemoryOomControl = &v1.MemoryOomControl{
			OomKillDisable: oom["oom_kill_disable"], UnderOom: oom["under_oom"], OomKill: oom["oom_kill"],
		}
	}
	return nil
}

// statsV2 reads a v2 cgroup's metrics from dir.
func statsV2(dir string) (*v2.Metrics, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", dir, err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	// A v2 "max" reads as MaxUint64, as containerd's cgroup2 package reads
	// it (v1's limits read as PAGE_COUNTER_MAX pages instead).
	value := func(name string) uint64 {
		data, err := os.ReadFile(f(name))
		if err != nil {
			return 0
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			return math.MaxUint64
		}
		v, _ := parseUint(s)
		return v
	}
	kvs := func(name string) (map[string]uint64, error) {
		kv, err := readKV(f(name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return kv, err
	}
	m := &v2.Metrics{Pids: &v2.PidsStat{Current: value("pids.current"), Limit: value("pids.max")}}
	cpu, err := kvs("cpu.stat")
	if err != nil {
		return nil, err
	}
	m.CPU = &v2.CPUStat{
		UsageUsec: cpu["usage_usec"], UserUsec: cpu["user_usec"], SystemUsec: cpu["system_usec"],
		NrPeriods: cpu["nr_periods"], NrThrottled: cpu["nr_throttled"], ThrottledUsec: cpu["throttled_usec"],
		NrBursts: cpu["nr_bursts"], BurstUsec: cpu["burst_usec"], PSI: readPSI(f("cpu.pressure")),
	}
	mem, err := kvs("memory.stat")
	if err != nil {
		return nil, err
	}
	m.Memory = &v2.MemoryStat{}
	if mem != nil {
		m.Memory = &v2.MemoryStat{
			Anon: mem["anon"], File: mem["file"], KernelStack: mem["kernel_stack"], Slab: mem["slab"],
			Sock: mem["sock"], Shmem: mem["shmem"], FileMapped: mem["file_mapped"], FileDirty: mem["file_dirty"],
			FileWriteback: mem["file_writeback"], AnonThp: mem["anon_thp"], InactiveAnon: mem["inactive_anon"],
			ActiveAnon: mem["active_anon"], InactiveFile: mem["inactive_file"], ActiveFile: mem["active_file"],
			Unevictable: mem["unevictable"], SlabReclaimable: mem["slab_reclaimable"],
			SlabUnreclaimable: mem["slab_unreclaimable"], Pgfault: mem["pgfault"], Pgmajfault: mem["pgmajfault"],
			WorkingsetRefault: mem["workingset_refault"], WorkingsetActivate: mem["workingset_activate"],
			WorkingsetNodereclaim: mem["workingset_nodereclaim"], Pgrefill: mem["pgrefill"], Pgscan: mem["pgscan"],
			Pgsteal: mem["pgsteal"], Pgactivate: mem["pgactivate"], Pgdeactivate: mem["pgdeactivate"],
			Pglazyfree: mem["pglazyfree"], Pglazyfreed: mem["pglazyfreed"], ThpFaultAlloc: mem["thp_fault_alloc"],
			ThpCollapseAlloc: mem["thp_collapse_alloc"],
			Usage:            value("memory.current"), UsageLimit: value("memory.max"), MaxUsage: value("memory.peak"),
			SwapUsage: value("memory.swap.current"), SwapLimit: value("memory.swap.max"),
			SwapMaxUsage: value("memory.swap.peak"), PSI: readPSI(f("memory.pressure")),
		}
	}
	ev, err := kvs("memory.events")
	if err != nil {
		return nil, err
	}
	if len(ev) > 0 {
		m.MemoryEvents = &v2.MemoryEvents{
			Low: ev["low"], High: ev["high"], Max: ev["max"], Oom: ev["oom"], OomKill: ev["oom_kill"],
			OomGroupKill: ev["oom_group_kill"],
		}
	}
	m.Io = &v2.IOStat{Usage: readIOStat(f("io.stat")), PSI: readPSI(f("io.pressure"))}
	m.Rdma = &v2.RdmaStat{Current: readRdma(f("rdma.current")), Limit: readRdma(f("rdma.max"))}
	for _, size := range hugePageSizes(dir, ".max") {
		ev, _ := readKV(f("hugetlb." + size + ".events"))
		m.Hugetlb = append(m.Hugetlb, &v2.HugeTlbStat{
			Pagesize: size, Max: value("hugetlb." + size + ".max"), Current: value("hugetlb." + size + ".current"),
			Failcnt: ev["max"],
		})
	}
	return m, nil
}

// hugePageSizes returns the huge page sizes ("2MB", "1GB") the cgroup in
// dir has files hugetlb.SIZE+suffix for, in the kernel's order.
func hugePageSizes(dir, suffix string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "hugetlb.*"+suffix))
	var sizes []string
	for _, file := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "hugetlb."), suffix)
		if name != "" && !strings.Contains(name, ".") {
			sizes = append(sizes, name)
		}
	}
	return sizes
}

// readIOStat parses io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N …".
func readIOStat(file string) []*v2.IOEntry {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []*v2.IOEntry
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		maj, min, ok := strings.Cut(fields[0], ":")
		if !ok {
			continue
		}
		e := &v2.IOEntry{}
		if e.Major, err = strconv.ParseUint(maj, 10, 64); err != nil {
			continue
		}
		if e.Minor, err = strconv.ParseUint(min, 10, 64); err != nil {
			continue
		}
		for _, kv := range fields[1:] {
			k, s, _ := strings.Cut(kv, "=")
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				e.Rbytes = v
			case "wbytes":
				e.Wbytes = v
			case "rios":
				e.Rios = v
			case "wios":
				e.Wios = v
			}
		}
		out = append(out, e)
	}
	return out
}

// readRdma parses rdma.current or rdma.max: "DEV hca_handle=N hca_object=N"
// ("max" for no limit: MaxUint32).
func readRdma(file string) []*v2.RdmaEntry {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []*v2.RdmaEntry
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		e := &v2.RdmaEntry{Device: fields[0]}
		for _, kv := range fields[1:] {
			k, s, _ := strings.Cut(kv, "=")
			v := uint64(math.MaxUint32)
			if s != "max" {
				n, err := strconv.ParseUint(s, 10, 32)
				if err != nil {
					continue
				}
				v = n
			}
			switch k {
			case "hca_handle":
				e.HcaHandles = uint32(v)
			case "hca_object":
				e.HcaObjects = uint32(v)
			}
		}
		out = append(out, e)
	}
	return out
}

// readPSI parses a pressure file ("some avg10=… avg60=… avg300=… total=…"
// and "full …"); nil where the kernel has none.
func readPSI(file string) *v2.PSIStats {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	psi := &v2.PSIStats{}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		d := &v2.PSIData{}
		switch fields[0] {
		case "some":
			psi.Some = d
		case "full":
			psi.Full = d
		default:
			continue
		}
		for _, kv := range fields[1:] {
			k, s, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(s, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(s, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(s, 64)
			case "total":
				d.Total, err = strconv.ParseUint(s, 10, 64)
			}
			if err != nil {
				return nil
			}
		}
	}
	return psi
}

// readUint reads a file holding one number; "max" (no limit) and negative
// values read as 0, as containerd's cgroup1 package reads them.
func readUint(file string) (uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return parseUint(strings.TrimSpace(string(data)))
}

// parseUint parses a cgroup number: "max" and negative numbers are 0.
func parseUint(s string) (uint64, error) {
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if i, ierr := strconv.ParseInt(s, 10, 64); (ierr == nil && i < 0) ||
			(errors.Is(ierr, strconv.ErrRange) && strings.HasPrefix(s, "-")) {
			return 0, nil
		}
		return 0, err
	}
	return v, nil
}

// readUints reads a file of space-separated numbers.
func readUints(file string) ([]uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, f := range strings.Fields(string(data)) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// readKV reads a file of "key value" lines.
func readKV(file string) (map[string]uint64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]uint64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s: bad line %q", file, s.Text())
		}
		v, err := parseUint(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		kv[fields[0]] = v
	}
	return kv, s.Err()
}
