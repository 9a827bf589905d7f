package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// userHZ is the unit of /proc/stat's CPU times: USER_HZ, 100 on Linux.
const userHZ = 100

// hostCPU returns the CPU time the host has spent running (not idle, not
// waiting for I/O), in nanoseconds, from /proc/stat's "cpu" line.
func hostCPU(proc string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("%s: no cpu line", filepath.Join(proc, "stat"))
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already counted in user.
	var ticks uint64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i > 7 {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", filepath.Join(proc, "stat"), err)
		}
		ticks += n
	}
	return ticks * (1e9 / userHZ), nil
}

// hostMemory reads /proc/meminfo as kubelet reads the root cgroup: usage is
// what is not free, the working set usage less inactive file pages, RSS the
// anonymous pages, available the total less the working set.
func hostMemory(proc string) (total uint64, u usage, err error) {
	f, err := os.Open(filepath.Join(proc, "meminfo"))
	if err != nil {
		return 0, usage{}, err
	}
	defer f.Close()
	kv := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		kv[k] = n << 10
	}
	if err := sc.Err(); err != nil {
		return 0, usage{}, err
	}
	total, ok := kv["MemTotal"]
	if !ok {
		return 0, usage{}, fmt.Errorf("%s: no MemTotal", f.Name())
	}
	u.mem = sub(total, kv["MemFree"])
	u.workingSet = sub(u.mem, kv["Inactive(file)"])
	u.rss = kv["AnonPages"]
	return total, u, nil
}

// netDev reads the interfaces of a /proc/net/dev file.
func netDev(path string) ([]statsv1alpha1.InterfaceStats, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []statsv1alpha1.InterfaceStats
	for i, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if i < 2 || !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("%s: short line %q", path, line)
		}
		n := make([]uint64, 16)
		for j := range n {
			if n[j], err = strconv.ParseUint(f[j], 10, 64); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
		out = append(out, statsv1alpha1.InterfaceStats{Name: strings.TrimSpace(name),
			RxBytes: &n[0], RxErrors: &n[2], TxBytes: &n[8], TxErrors: &n[10]})
	}
	return out, nil
}

// defaultInterface returns the interface of the IPv4 default route in a
// /proc/net/route file, "" if there is none.
func defaultInterface(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" && f[0] != "Iface" {
			return f[0]
		}
	}
	return ""
}

// hostInterface tells whether the node's network figures count interface
// name: not loopback, nor the pods' own (veths, taps, the pod bridge), as
// cadvisor leaves them out.
func hostInterface(name, bridge string) bool {
	if name == "lo" || name == bridge {
		return false
	}
	for _, p := range []string{"veth", "tap", "cni", "docker", "flannel", "cali", "ifb"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// network makes NetworkStats of ifaces: the primary interface's figures on
// top (primary, else eth0, else the first), every one in Interfaces.
func network(ifaces []statsv1alpha1.InterfaceStats, primary string) *statsv1alpha1.NetworkStats {
	if len(ifaces) == 0 {
		return nil
	}
	top := ifaces[0]
	for _, name := range []string{primary, "eth0"} {
		found := false
		for _, i := range ifaces {
			if name != "" && i.Name == name {
				top, found = i, true
				break
			}
		}
		if found {
			break
		}
	}
	return &statsv1alpha1.NetworkStats{InterfaceStats: top, Interfaces: ifaces}
}
