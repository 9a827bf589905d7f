package nodeinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// unlimited is the smallest value read from a cgroup limit file that means "no limit": cgroup v1 writes
// 9223372036854771712 (PAGE_COUNTER_MAX pages) for an unlimited memory.limit_in_bytes.
const unlimited = int64(1) << 62

// cgroup is one cgroup of the measured process in the hierarchy that holds a controller.
type cgroup struct {
	// v2 is true for the unified (cgroup2) hierarchy.
	v2 bool
	// dirs are the cgroup's directory and then each of its ancestors up to the hierarchy's mount point, all
	// under the Monitor's Root. Some may not exist (a cgroup outside the visible part of the hierarchy).
	dirs []string
}

// mount is a cgroup file system in /proc/self/mountinfo.
type mount struct {
	root, point string
	v2          bool
	controllers []string // v1 only
}

// cgroupFor finds the cgroup that limits the measured process for controller ("cpu", "cpuset", "memory"):
// the v1 hierarchy of that controller when one is mounted and the process is in it (cgroup v1, and hybrid where
// the unified hierarchy holds no controllers), else the unified hierarchy. ok is false when neither is mounted.
func (m *Monitor) cgroupFor(controller string) (c cgroup, ok bool, err error) {
	mounts, err := m.cgroupMounts()
	if err != nil {
		return cgroup{}, false, err
	}
	paths, err := m.cgroupPaths()
	if err != nil {
		return cgroup{}, false, err
	}
	for _, mt := range mounts {
		if mt.v2 || !slices.Contains(mt.controllers, controller) {
			continue
		}
		p, ok := paths[controller]
		if !ok {
			continue
		}
		return cgroup{dirs: m.cgroupDirs(mt, p)}, true, nil
	}
	for _, mt := range mounts {
		if !mt.v2 {
			continue
		}
		p, ok := paths[""]
		if !ok {
			continue
		}
		return cgroup{v2: true, dirs: m.cgroupDirs(mt, p)}, true, nil
	}
	return cgroup{}, false, nil
}

// cgroupDirs returns the directories, under Root, of cgroup p and its ancestors in the hierarchy mounted at mt.
func (m *Monitor) cgroupDirs(mt mount, p string) []string {
	if m.Cgroup != "" {
		p = m.Cgroup
	}
	p = path.Clean("/" + p)
	// A mount may show only part of the hierarchy (a container without a cgroup namespace): its root is then a
	// prefix of the process's path. A path outside the mount is not visible at all; fall back to the mount.
	rel := "/"
	switch {
	case mt.root == "/":
		rel = p
	case p == mt.root:
	case strings.HasPrefix(p, mt.root+"/"):
		rel = strings.TrimPrefix(p, mt.root)
	}
	var dirs []string
	for {
		dirs = append(dirs, filepath.Join(m.root(), mt.point, rel))
		if rel == "/" {
			return dirs
		}
		rel = path.Dir(rel)
	}
}

// cgroupPaths reads /proc/self/cgroup: the process's cgroup path for each v1 controller, and for "" the path in
// the unified hierarchy.
func (m *Monitor) cgroupPaths() (map[string]string, error) {
	f := filepath.Join(m.root(), "proc/self/cgroup")
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("read cgroup membership: %w", err)
	}
	paths := map[string]string{}
	for line := range strings.Lines(string(data)) {
		// hierarchy-ID:controller-list:cgroup-path; "0::path" for cgroup2.
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths, nil
}

// cgroupMounts reads the cgroup and cgroup2 mounts from /proc/self/mountinfo, in order.
func (m *Monitor) cgroupMounts() ([]mount, error) {
	f := filepath.Join(m.root(), "proc/self/mountinfo")
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var mounts []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// 36 35 98:0 /root /mount/point rw,noatime master:1 - fstype source super,options
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		fstype, super := fields[sep+1], fields[sep+3]
		mt := mount{root: unescapeMount(fields[3]), point: unescapeMount(fields[4])}
		switch fstype {
		case "cgroup2":
			mt.v2 = true
		case "cgroup":
			mt.controllers = strings.Split(super, ",")
		default:
			continue
		}
		mounts = append(mounts, mt)
	}
	return mounts, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cpuLimitMilli is the tightest CPU quota of c and its ancestors, in milli-CPUs: v1 cpu.cfs_quota_us over
// cpu.cfs_period_us, v2 cpu.max. ok is false when none is set.
func (c cgroup) cpuLimitMilli() (limit int64, ok bool, err error) {
	for _, d := range c.dirs {
		var quota, period int64
		if c.v2 {
			s, found, err := readString(filepath.Join(d, "cpu.max"))
			if err != nil {
				return 0, false, err
			}
			f := strings.Fields(s)
			if !found || len(f) == 0 || f[0] == "max" {
				continue
			}
			period = 100000
			if quota, err = strconv.ParseInt(f[0], 10, 64); err != nil {
				return 0, false, fmt.Errorf("parse %s: %w", filepath.Join(d, "cpu.max"), err)
			}
			if len(f) > 1 {
				if period, err = strconv.ParseInt(f[1], 10, 64); err != nil {
					return 0, false, fmt.Errorf("parse %s: %w", filepath.Join(d, "cpu.max"), err)
				}
			}
		} else {
			q, qFound, err := readInt(filepath.Join(d, "cpu.cfs_quota_us"))
			if err != nil {
				return 0, false, err
			}
			p, pFound, err := readInt(filepath.Join(d, "cpu.cfs_period_us"))
			if err != nil {
				return 0, false, err
			}
			if !qFound || !pFound {
				continue
			}
			quota, period = q, p
		}
		if quota <= 0 || period <= 0 {
			continue
		}
		milli := quota * 1000 / period
		if !ok || milli < limit {
			limit, ok = milli, true
		}
	}
	return limit, ok, nil
}

// cpusetCount is the number of CPUs the cpuset of c allows (v1 cpuset.effective_cpus or cpuset.cpus, v2
// cpuset.cpus.effective). ok is false when no cpuset file is found.
func (c cgroup) cpusetCount() (n int, ok bool, err error) {
	names := []string{"cpuset.effective_cpus", "cpuset.cpus"}
	if c.v2 {
		names = []string{"cpuset.cpus.effective"}
	}
	for _, d := range c.dirs {
		for _, name := range names {
			s, found, err := readString(filepath.Join(d, name))
			if err != nil {
				return 0, false, err
			}
			if !found || s == "" {
				continue
			}
			n, err := countCPUList(s)
			if err != nil {
				return 0, false, fmt.Errorf("parse %s: %w", filepath.Join(d, name), err)
			}
			return n, true, nil
		}
	}
	return 0, false, nil
}

// memory is the tightest memory limit of c and its ancestors (v1 memory.limit_in_bytes, v2 memory.max) and the
// least headroom under any of those limits: limit minus working set (usage less inactive file pages, as the
// kubelet counts it). ok is false when no limit is set.
func (c cgroup) memory() (limit, headroom int64, ok bool, err error) {
	limitFile, usageFile, inactiveKey := "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
	if c.v2 {
		limitFile, usageFile, inactiveKey = "memory.max", "memory.current", "inactive_file"
	}
	for _, d := range c.dirs {
		l, found, err := readInt(filepath.Join(d, limitFile))
		if err != nil {
			return 0, 0, false, err
		}
		if !found || l < 0 || l >= unlimited {
			continue
		}
		usage, _, err := readInt(filepath.Join(d, usageFile))
		if err != nil {
			return 0, 0, false, err
		}
		inactive, err := readKeyed(filepath.Join(d, "memory.stat"), inactiveKey)
		if err != nil {
			return 0, 0, false, err
		}
		ws := max(usage-inactive, 0)
		h := max(l-ws, 0)
		if !ok {
			limit, headroom, ok = l, h, true
			continue
		}
		limit, headroom = min(limit, l), min(headroom, h)
	}
	return limit, headroom, ok, nil
}

// readString reads a small file and trims white space; found is false when the file does not exist.
func readString(file string) (s string, found bool, err error) {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(string(data)), true, nil
}

// readInt reads a file holding one integer; "max" reads as no limit (math.MaxInt64); found is false when the file
// does not exist.
func readInt(file string) (n int64, found bool, err error) {
	s, found, err := readString(file)
	if err != nil || !found {
		return 0, found, err
	}
	if s == "max" {
		return 1<<63 - 1, true, nil
	}
	n, err = strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("parse %s: %w", file, err)
	}
	return n, true, nil
}

// readKeyed reads the value of key from a "key value" per line file such as memory.stat; a missing file or key
// reads as zero.
func readKeyed(file, key string) (int64, error) {
	s, found, err := readString(file)
	if err != nil || !found {
		return 0, err
	}
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s %s: %w", file, key, err)
			}
			return n, nil
		}
	}
	return 0, nil
}

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,8,10-11".
func countCPUList(s string) (int, error) {
	n := 0
	for part := range strings.SplitSeq(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("bad CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("bad CPU list %q", s)
			}
		}
		n += b - a + 1
	}
	return n, nil
}
