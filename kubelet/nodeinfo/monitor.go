package nodeinfo

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Defaults of a Monitor made by NewMonitor. The eviction thresholds are the kubelet's hard eviction defaults
// (memory.available<100Mi, nodefs.available<10%); the kubelet has no default for pid.available.
const (
	// DefaultMaxPods is the kubelet's default --max-pods.
	DefaultMaxPods = 110
	// DefaultMemoryAvailableBytes is the memory eviction threshold: 100Mi.
	DefaultMemoryAvailableBytes = 100 << 20
	// DefaultStorageAvailablePercent is the ephemeral-storage eviction threshold, in percent of the file system.
	DefaultStorageAvailablePercent = 10
	// DefaultPIDAvailablePercent is the PID eviction threshold, in percent of the system's PID limit.
	DefaultPIDAvailablePercent = 10
)

// Thresholds are the levels of free resources below which the node reports pressure, like the kubelet's hard
// eviction thresholds. A zero field never reports pressure.
type Thresholds struct {
	// MemoryAvailableBytes: MemoryPressure when less memory than this is available.
	MemoryAvailableBytes int64
	// StorageAvailablePercent: DiskPressure when less than this percent of the ephemeral-storage file system is
	// available to unprivileged users.
	StorageAvailablePercent int64
	// PIDAvailablePercent: PIDPressure when fewer than this percent of the system's PIDs are free.
	PIDAvailablePercent int64
}

// DefaultThresholds returns the thresholds NewMonitor sets.
func DefaultThresholds() Thresholds {
	return Thresholds{
		MemoryAvailableBytes:    DefaultMemoryAvailableBytes,
		StorageAvailablePercent: DefaultStorageAvailablePercent,
		PIDAvailablePercent:     DefaultPIDAvailablePercent,
	}
}

// Monitor measures the host the agent runs on. It only reads files (under Root) and calls statfs, so one Monitor
// may be used from several goroutines once its fields are set; set them before first use and do not change them
// after.
type Monitor struct {
	// Root is the directory that holds the proc, sys and etc trees read; "" means "/". Tests point it at a
	// testdata tree.
	Root string
	// StorageDir is a directory on the file system whose size is the node's ephemeral storage (the agent's state
	// directory, where emptyDirs and container writable layers live). It is not under Root. It must exist.
	StorageDir string
	// Cgroup, when set, is the cgroup path (as in /proc/self/cgroup, e.g. "/feather") whose limits bound CPU and
	// memory, instead of the agent's own cgroup.
	Cgroup string
	// MaxPods is the node's pod capacity.
	MaxPods int64
	// Reserved is taken from capacity to give allocatable, like the kubelet's --system-reserved plus
	// --kube-reserved: resources for the system and the agent, not for pods. NewMonitor leaves it zero.
	Reserved Resources
	// Thresholds are the pressure thresholds; MemoryAvailableBytes and StorageAvailablePercent are also taken
	// from allocatable, as the kubelet takes its hard eviction thresholds.
	Thresholds Thresholds

	// statfs and interfaceAddrs replace the host's in tests.
	statfs         func(dir string) (fsStats, error)
	interfaceAddrs func(name string) ([]net.Addr, error)
}

// fsStats is what statfs tells of a file system, in bytes.
type fsStats struct {
	total, available int64
}

// NewMonitor returns a Monitor of this host with the kubelet's defaults: DefaultMaxPods, DefaultThresholds, no
// reservation, ephemeral storage measured on the file system holding storageDir.
func NewMonitor(storageDir string) *Monitor {
	return &Monitor{
		Root:       "/",
		StorageDir: storageDir,
		MaxPods:    DefaultMaxPods,
		Thresholds: DefaultThresholds(),
	}
}

func (m *Monitor) root() string {
	if m.Root == "" {
		return "/"
	}
	return m.Root
}

// Capacity measures what the node has:
//   - CPU: the online CPUs, bounded by the cpuset and the CPU quota (v1 cpu.cfs_quota_us/cpu.cfs_period_us, v2
//     cpu.max) of the agent's cgroup and its ancestors;
//   - memory: MemTotal, bounded by the cgroup's memory limit (v1 memory.limit_in_bytes, v2 memory.max; "max" and
//     v1's huge "unlimited" value mean no limit);
//   - pods: MaxPods;
//   - ephemeral storage: the size of the file system holding StorageDir.
func (m *Monitor) Capacity() (Resources, error) {
	cpu, err := m.cpuMilli()
	if err != nil {
		return Resources{}, err
	}
	mem, err := m.memoryBytes()
	if err != nil {
		return Resources{}, err
	}
	fs, err := m.storage()
	if err != nil {
		return Resources{}, err
	}
	return Resources{CPUMilli: cpu, MemoryBytes: mem, Pods: m.MaxPods, EphemeralStorageBytes: fs.total}, nil
}

// Allocatable is what pods may request of capacity: capacity less Reserved, less the memory eviction threshold
// and the ephemeral-storage eviction threshold (StorageAvailablePercent of the storage), as the kubelet computes
// it. No field goes below zero.
func (m *Monitor) Allocatable(capacity Resources) Resources {
	a := Resources{
		CPUMilli:              capacity.CPUMilli - m.Reserved.CPUMilli,
		MemoryBytes:           capacity.MemoryBytes - m.Reserved.MemoryBytes - m.Thresholds.MemoryAvailableBytes,
		Pods:                  capacity.Pods - m.Reserved.Pods,
		EphemeralStorageBytes: capacity.EphemeralStorageBytes - m.Reserved.EphemeralStorageBytes - capacity.EphemeralStorageBytes*m.Thresholds.StorageAvailablePercent/100,
	}
	a.CPUMilli = max(a.CPUMilli, 0)
	a.MemoryBytes = max(a.MemoryBytes, 0)
	a.Pods = max(a.Pods, 0)
	a.EphemeralStorageBytes = max(a.EphemeralStorageBytes, 0)
	return a
}

func (m *Monitor) cpuMilli() (int64, error) {
	s, _, err := readString(filepath.Join(m.root(), "sys/devices/system/cpu/online"))
	if err != nil {
		return 0, fmt.Errorf("read online CPUs: %w", err)
	}
	online, err := countCPUList(s)
	if err != nil || online == 0 {
		return 0, fmt.Errorf("read online CPUs: bad list %q in %s", s, filepath.Join(m.root(), "sys/devices/system/cpu/online"))
	}
	milli := int64(online) * 1000
	if cg, ok, err := m.cgroupFor("cpuset"); err != nil {
		return 0, fmt.Errorf("find cpuset cgroup: %w", err)
	} else if ok {
		n, ok, err := cg.cpusetCount()
		if err != nil {
			return 0, fmt.Errorf("read cpuset: %w", err)
		}
		if ok && n > 0 {
			milli = min(milli, int64(n)*1000)
		}
	}
	if cg, ok, err := m.cgroupFor("cpu"); err != nil {
		return 0, fmt.Errorf("find cpu cgroup: %w", err)
	} else if ok {
		quota, ok, err := cg.cpuLimitMilli()
		if err != nil {
			return 0, fmt.Errorf("read CPU quota: %w", err)
		}
		if ok {
			milli = min(milli, quota)
		}
	}
	return milli, nil
}

func (m *Monitor) memoryBytes() (int64, error) {
	mi, err := m.meminfo()
	if err != nil {
		return 0, err
	}
	total, ok := mi["MemTotal"]
	if !ok {
		return 0, errors.New("read memory: no MemTotal in /proc/meminfo")
	}
	cg, ok, err := m.cgroupFor("memory")
	if err != nil {
		return 0, fmt.Errorf("find memory cgroup: %w", err)
	}
	if ok {
		limit, _, ok, err := cg.memory()
		if err != nil {
			return 0, fmt.Errorf("read memory limit: %w", err)
		}
		if ok {
			total = min(total, limit)
		}
	}
	return total, nil
}

// memoryAvailable is MemAvailable from /proc/meminfo, bounded by the headroom under the cgroup's memory limit.
func (m *Monitor) memoryAvailable() (int64, error) {
	mi, err := m.meminfo()
	if err != nil {
		return 0, err
	}
	avail, ok := mi["MemAvailable"]
	if !ok {
		return 0, errors.New("read memory: no MemAvailable in /proc/meminfo")
	}
	cg, ok, err := m.cgroupFor("memory")
	if err != nil {
		return 0, fmt.Errorf("find memory cgroup: %w", err)
	}
	if ok {
		_, headroom, ok, err := cg.memory()
		if err != nil {
			return 0, fmt.Errorf("read memory usage: %w", err)
		}
		if ok {
			avail = min(avail, headroom)
		}
	}
	return avail, nil
}

// meminfo reads /proc/meminfo in bytes.
func (m *Monitor) meminfo() (map[string]int64, error) {
	f := filepath.Join(m.root(), "proc/meminfo")
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("read memory: %w", err)
	}
	mi := map[string]int64{}
	for line := range strings.Lines(string(data)) {
		// MemTotal:       24684084 kB
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read memory: parse %s in %s: %w", key, f, err)
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		mi[key] = n
	}
	return mi, nil
}

func (m *Monitor) storage() (fsStats, error) {
	if m.StorageDir == "" {
		return fsStats{}, errors.New("measure ephemeral storage: no StorageDir set")
	}
	statfs := m.statfs
	if statfs == nil {
		statfs = statFS
	}
	s, err := statfs(m.StorageDir)
	if err != nil {
		return fsStats{}, fmt.Errorf("measure ephemeral storage on %s: %w", m.StorageDir, err)
	}
	return s, nil
}

// pids returns the system's task limit (the smaller of kernel.pid_max and kernel.threads-max) and the number of
// tasks, from the last field of /proc/loadavg, as the kubelet counts them.
func (m *Monitor) pids() (limit, used int64, err error) {
	limit = -1
	for _, name := range []string{"proc/sys/kernel/pid_max", "proc/sys/kernel/threads-max"} {
		n, found, err := readInt(filepath.Join(m.root(), name))
		if err != nil {
			return 0, 0, fmt.Errorf("read PID limit: %w", err)
		}
		if found && (limit < 0 || n < limit) {
			limit = n
		}
	}
	if limit < 0 {
		return 0, 0, errors.New("read PID limit: no kernel.pid_max or kernel.threads-max")
	}
	s, _, err := readString(filepath.Join(m.root(), "proc/loadavg"))
	if err != nil {
		return 0, 0, fmt.Errorf("count tasks: %w", err)
	}
	// 0.17 0.63 1.29 3/105 27305: runnable/total tasks.
	f := strings.Fields(s)
	if len(f) < 4 {
		return 0, 0, fmt.Errorf("count tasks: bad /proc/loadavg %q", s)
	}
	_, total, ok := strings.Cut(f[3], "/")
	used, err = strconv.ParseInt(total, 10, 64)
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("count tasks: bad /proc/loadavg %q", s)
	}
	return limit, used, nil
}

// systemInfo fills what the host tells of itself in a NodeSystemInfo: kernel, OS image, machine and boot IDs,
// operating system and architecture. Each field is best effort and left empty when it cannot be read.
func (m *Monitor) systemInfo() corev1.NodeSystemInfo {
	read := func(name string) string {
		s, _, _ := readString(filepath.Join(m.root(), name))
		return s
	}
	return corev1.NodeSystemInfo{
		MachineID:       read("etc/machine-id"),
		SystemUUID:      strings.ToLower(read("sys/class/dmi/id/product_uuid")),
		BootID:          read("proc/sys/kernel/random/boot_id"),
		KernelVersion:   read("proc/sys/kernel/osrelease"),
		OSImage:         m.osImage(),
		OperatingSystem: runtime.GOOS,
		Architecture:    runtime.GOARCH,
	}
}

// osImage is PRETTY_NAME from os-release(5) (/etc/os-release, else /usr/lib/os-release), or "Linux".
func (m *Monitor) osImage() string {
	for _, name := range []string{"etc/os-release", "usr/lib/os-release"} {
		data, err := os.ReadFile(filepath.Join(m.root(), name))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME=")
			if !ok {
				continue
			}
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			} else {
				v = strings.Trim(v, `'"`)
			}
			if v != "" {
				return v
			}
		}
	}
	return "Linux"
}

// InternalIP returns the first global unicast IPv4 address of the interface that holds the default route (the
// one with the lowest metric in /proc/net/route).
func (m *Monitor) InternalIP() (string, error) {
	iface, err := m.defaultRouteInterface()
	if err != nil {
		return "", err
	}
	addrsOf := m.interfaceAddrs
	if addrsOf == nil {
		addrsOf = func(name string) ([]net.Addr, error) {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return nil, err
			}
			return ifi.Addrs()
		}
	}
	addrs, err := addrsOf(iface)
	if err != nil {
		return "", fmt.Errorf("find node IP: addresses of %s: %w", iface, err)
	}
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if ip4 := ip.To4(); ip4 != nil && ip4.IsGlobalUnicast() {
			return ip4.String(), nil
		}
	}
	return "", fmt.Errorf("find node IP: default-route interface %s has no IPv4 address", iface)
}

func (m *Monitor) defaultRouteInterface() (string, error) {
	f := filepath.Join(m.root(), "proc/net/route")
	data, err := os.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("find node IP: %w", err)
	}
	const rtfUp = 0x1
	best, bestMetric := "", int64(-1)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] == "Iface" {
			continue
		}
		dst, err1 := hex.DecodeString(f[1])
		mask, err2 := hex.DecodeString(f[7])
		flags, err3 := strconv.ParseUint(f[3], 16, 32)
		metric, err4 := strconv.ParseInt(f[6], 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			continue
		}
		if !bytes.Equal(dst, []byte{0, 0, 0, 0}) || !bytes.Equal(mask, []byte{0, 0, 0, 0}) || flags&rtfUp == 0 {
			continue
		}
		if bestMetric < 0 || metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	if best == "" {
		return "", errors.New("find node IP: no IPv4 default route; set the node's InternalIP in the config")
	}
	return best, nil
}
