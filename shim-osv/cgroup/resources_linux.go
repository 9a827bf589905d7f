package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// setting is one value written into a cgroup file.
type setting struct {
	file, value string
}

// writeSettings writes each setting into its file in dir, in order.
func writeSettings(dir string, ss []setting) error {
	for _, s := range ss {
		if err := os.WriteFile(filepath.Join(dir, s.file), []byte(s.value), 0); err != nil {
			return fmt.Errorf("write %s: %w", s.file, err)
		}
	}
	return nil
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }
func i64(v int64) string  { return strconv.FormatInt(v, 10) }

// createV1 makes dir in the v1 hierarchy m and writes the resources of
// m's controllers into it, as containerd's cgroup1 package does.
func createV1(m Mount, dir string, res *specs.LinuxResources) error {
	if m.has("cpuset") {
		// A new cpuset has no CPUs and no memory nodes, and takes no process
		// until it has: each directory from the root down gets its parent's.
		if err := cpusetInherit(m.Dir, dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeSettings(dir, v1Settings(m, res))
}

// v1Settings returns what containerd's cgroup1 package writes for res into
// a cgroup of hierarchy m.
func v1Settings(m Mount, res *specs.LinuxResources) []setting {
	var ss []setting
	if cpu := res.CPU; cpu != nil && m.has("cpu") {
		for _, t := range []struct {
			file string
			u    *uint64
			i    *int64
		}{
			{file: "cpu.rt_period_us", u: cpu.RealtimePeriod},
			{file: "cpu.rt_runtime_us", i: cpu.RealtimeRuntime},
			{file: "cpu.shares", u: cpu.Shares},
			{file: "cpu.cfs_period_us", u: cpu.Period},
			{file: "cpu.cfs_quota_us", i: cpu.Quota},
		} {
			switch {
			case t.u != nil:
				ss = append(ss, setting{t.file, u64(*t.u)})
			case t.i != nil:
				ss = append(ss, setting{t.file, i64(*t.i)})
			}
		}
	}
	if cpu := res.CPU; cpu != nil && m.has("cpuset") {
		if cpu.Cpus != "" {
			ss = append(ss, setting{"cpuset.cpus", cpu.Cpus})
		}
		if cpu.Mems != "" {
			ss = append(ss, setting{"cpuset.mems", cpu.Mems})
		}
	}
	if mem := res.Memory; mem != nil && m.has("memory") {
		var oom *int64
		if d := mem.DisableOOMKiller; d != nil {
			v := int64(0)
			if *d {
				v = 1
			}
			oom = &v
		}
		var swappiness *int64
		if mem.Swappiness != nil {
			v := int64(*mem.Swappiness)
			swappiness = &v
		}
		for _, t := range []struct {
			file string
			v    *int64
		}{
			{"memory.limit_in_bytes", mem.Limit},
			{"memory.soft_limit_in_bytes", mem.Reservation},
			{"memory.memsw.limit_in_bytes", mem.Swap},
			{"memory.kmem.limit_in_bytes", mem.Kernel}, //nolint:staticcheck // written as containerd's library does
			{"memory.kmem.tcp.limit_in_bytes", mem.KernelTCP},
			{"memory.oom_control", oom},
			{"memory.swappiness", swappiness},
		} {
			if t.v != nil {
				ss = append(ss, setting{t.file, i64(*t.v)})
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil && *p.Limit > 0 && m.has("pids") {
		ss = append(ss, setting{"pids.max", i64(*p.Limit)})
	}
	if b := res.BlockIO; b != nil && m.has("blkio") {
		if b.Weight != nil {
			ss = append(ss, setting{"blkio.weight", u64(uint64(*b.Weight))})
		}
		if b.LeafWeight != nil {
			ss = append(ss, setting{"blkio.leaf_weight", u64(uint64(*b.LeafWeight))})
		}
		for _, d := range b.WeightDevice {
			if d.Weight != nil {
				ss = append(ss, setting{"blkio.weight_device", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.Weight)})
			}
			if d.LeafWeight != nil {
				ss = append(ss, setting{"blkio.leaf_weight_device", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.LeafWeight)})
			}
		}
		for _, t := range []struct {
			file string
			list []specs.LinuxThrottleDevice
		}{
			{"blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
			{"blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
			{"blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
			{"blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
		} {
			for _, d := range t.list {
				ss = append(ss, setting{t.file, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate)})
			}
		}
	}
	if m.has("hugetlb") {
		for _, l := range res.HugepageLimits {
			ss = append(ss, setting{"hugetlb." + l.Pagesize + ".limit_in_bytes", u64(l.Limit)})
		}
	}
	if n := res.Network; n != nil {
		if n.ClassID != nil && m.has("net_cls") {
			ss = append(ss, setting{"net_cls.classid", u64(uint64(*n.ClassID))})
		}
		if m.has("net_prio") {
			for _, p := range n.Priorities {
				ss = append(ss, setting{"net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority)})
			}
		}
	}
	if m.has("rdma") {
		for _, dev := range slices.Sorted(maps.Keys(res.Rdma)) {
			if s := rdmaLimit(dev, res.Rdma[dev]); s != "" {
				ss = append(ss, setting{"rdma.max", s})
			}
		}
	}
	return ss
}

// rdmaLimit is an rdma.max line, or "" when the limit sets nothing.
func rdmaLimit(dev string, l specs.LinuxRdma) string {
	var parts []string
	if l.HcaHandles != nil {
		parts = append(parts, "hca_handle="+u64(uint64(*l.HcaHandles)))
	}
	if l.HcaObjects != nil {
		parts = append(parts, "hca_object="+u64(uint64(*l.HcaObjects)))
	}
	if len(parts) == 0 {
		return ""
	}
	return dev + " " + strings.Join(parts, " ")
}

// cpusetInherit makes each directory from root down to dir (a cgroup of a
// cpuset hierarchy mounted at root), giving each whose cpuset.cpus or
// cpuset.mems is empty its parent's.
func cpusetInherit(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("cpuset cgroup %s is not below %s", dir, root)
	}
	parent := root
	for _, name := range strings.Split(rel, string(filepath.Separator)) {
		cur := filepath.Join(parent, name)
		if err := os.MkdirAll(cur, 0o755); err != nil {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(cur, f))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if len(bytes.Trim(v, "\n")) != 0 {
				continue
			}
			pv, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(cur, f), pv, 0); err != nil {
				return fmt.Errorf("write %s: %w", filepath.Join(cur, f), err)
			}
		}
		parent = cur
	}
	return nil
}

// createV2 makes dir in the v2 hierarchy mounted at root, enables the
// controllers res needs in its ancestors' cgroup.subtree_control and
// writes res, as containerd's cgroup2 package does. On error it removes
// dir.
func createV2(root, dir string, res *specs.LinuxResources) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ctrls, ss := v2Settings(res)
	err := enableControllers(root, dir, ctrls)
	if err == nil {
		err = writeSettings(dir, ss)
	}
	if err != nil {
		_ = os.Remove(dir)
	}
	return err
}

// enableControllers writes "+c" for each controller into the
// cgroup.subtree_control of root and of every directory below it down to
// dir's parent. Like containerd's library it fails only if the last such
// write fails (an unprivileged writer may be refused higher up where the
// controller is already on).
func enableControllers(root, dir string, ctrls []string) error {
	if len(ctrls) == 0 {
		return nil
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("cgroup %s is not below %s", dir, root)
	}
	on := make([]string, len(ctrls))
	for i, c := range ctrls {
		on[i] = "+" + c
	}
	line := []byte(strings.Join(on, " "))
	var last error
	cur := root
	names := strings.Split(rel, string(filepath.Separator))
	for i := 0; i < len(names); i++ {
		file := filepath.Join(cur, "cgroup.subtree_control")
		last = nil
		if err := writeExisting(file, line); err != nil {
			last = fmt.Errorf("enable controllers %v in %s: %w", ctrls, file, err)
		}
		cur = filepath.Join(cur, names[i])
	}
	return last
}

// writeExisting writes data into an existing file, without creating it.
func writeExisting(file string, data []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	return errors.Join(werr, f.Close())
}

// v2Settings returns the controllers containerd's cgroup2 package enables
// for res and the values it writes, converted from the v1 terms of the
// runtime spec as it converts them (cgroup2.ToResources).
func v2Settings(res *specs.LinuxResources) (ctrls []string, ss []setting) {
	if cpu := res.CPU; cpu != nil {
		ctrls = append(ctrls, "cpu")
		if cpu.Cpus != "" || cpu.Mems != "" {
			ctrls = append(ctrls, "cpuset")
		}
		if cpu.Shares != nil {
			ss = append(ss, setting{"cpu.weight", u64(sharesToWeight(*cpu.Shares))})
		}
		if cpu.Period != nil {
			quota := "max"
			if cpu.Quota != nil {
				quota = i64(*cpu.Quota)
			}
			ss = append(ss, setting{"cpu.max", quota + " " + u64(*cpu.Period)})
		}
		if cpu.Cpus != "" {
			ss = append(ss, setting{"cpuset.cpus", cpu.Cpus})
		}
		if cpu.Mems != "" {
			ss = append(ss, setting{"cpuset.mems", cpu.Mems})
		}
	}
	if mem := res.Memory; mem != nil {
		ctrls = append(ctrls, "memory")
		if mem.Swap != nil {
			swap := *mem.Swap
			if mem.Limit != nil {
				swap -= *mem.Limit // v1's memsw is memory plus swap, v2's swap.max the swap alone
			}
			ss = append(ss, setting{"memory.swap.max", i64(swap)})
		}
		if mem.Limit != nil {
			ss = append(ss, setting{"memory.max", i64(*mem.Limit)})
		}
		if mem.Reservation != nil {
			ss = append(ss, setting{"memory.low", i64(*mem.Reservation)})
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil {
		ctrls = append(ctrls, "pids")
		switch l := *p.Limit; {
		case l > 0:
			ss = append(ss, setting{"pids.max", i64(l)})
		case l < 0:
			ss = append(ss, setting{"pids.max", "max"})
		}
	}
	if b := res.BlockIO; b != nil {
		ctrls = append(ctrls, "io")
		if b.Weight != nil {
			ss = append(ss, setting{"io.bfq.weight", u64(uint64(1 + (*b.Weight-10)*9999/990))})
		}
		for _, t := range []struct {
			key  string
			list []specs.LinuxThrottleDevice
		}{
			{"rbps", b.ThrottleReadBpsDevice},
			{"wbps", b.ThrottleWriteBpsDevice},
			{"riops", b.ThrottleReadIOPSDevice},
			{"wiops", b.ThrottleWriteIOPSDevice},
		} {
			for _, d := range t.list {
				ss = append(ss, setting{"io.max", fmt.Sprintf("%d:%d %s=%d", d.Major, d.Minor, t.key, d.Rate)})
			}
		}
	}
	if res.Rdma != nil {
		ctrls = append(ctrls, "rdma")
		for _, dev := range slices.Sorted(maps.Keys(res.Rdma)) {
			l := res.Rdma[dev]
			if dev != "" && l.HcaHandles != nil && l.HcaObjects != nil {
				ss = append(ss, setting{"rdma.max", rdmaLimit(dev, l)})
			}
		}
	}
	if res.HugepageLimits != nil {
		ctrls = append(ctrls, "hugetlb")
		for _, l := range res.HugepageLimits {
			ss = append(ss, setting{"hugetlb." + l.Pagesize + ".max", u64(l.Limit)})
		}
	}
	return ctrls, ss
}

// sharesToWeight converts cgroup v1 CPU shares [2, 262144] to a cgroup v2
// weight [1, 10000] by the quadratic fit runc, crun and containerd's
// library use (shares 1024, v1's default, give weight 100, v2's).
func sharesToWeight(shares uint64) uint64 {
	switch {
	case shares == 0:
		return 0
	case shares <= 2:
		return 1
	case shares >= 262144:
		return 10000
	}
	l := math.Log2(float64(shares))
	exponent := (l*l+125*l)/612.0 - 7.0/34.0
	return uint64(math.Ceil(math.Pow(10, exponent)))
}
