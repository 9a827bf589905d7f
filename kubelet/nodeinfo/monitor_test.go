package nodeinfo

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/feather-edge/feather/internal/prereq"
)

const (
	mi = int64(1) << 20
	gi = int64(1) << 30
)

// testMonitor is a Monitor of the testdata tree root with a fake 100Gi file system, 40Gi of it available.
func testMonitor(root string) *Monitor {
	m := NewMonitor("/var/lib/feather")
	m.Root = root
	m.statfs = func(string) (fsStats, error) { return fsStats{total: 100 * gi, available: 40 * gi}, nil }
	m.interfaceAddrs = func(name string) ([]net.Addr, error) {
		if name != "eth0" {
			return nil, errors.New("no such interface")
		}
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
			&net.IPNet{IP: net.ParseIP("192.0.2.10").To4(), Mask: net.CIDRMask(24, 32)},
		}, nil
	}
	return m
}

// copyTree copies testdata/<name> into a fresh temporary directory that the test may change.
func copyTree(t *testing.T, name string) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeFile replaces root/name atomically, so that a Provider measuring meanwhile reads the old or the new file.
func writeFile(t *testing.T, root, name, content string) {
	t.Helper()
	f := filepath.Join(root, name)
	if err := os.WriteFile(f+".new", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f+".new", f); err != nil {
		t.Fatal(err)
	}
}

func TestCapacity(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tree      string
		cgroup    string
		cpuMilli  int64
		memory    int64
		available int64
	}{
		// 8 CPUs, cpuset 0-3, quota 150000/100000; 8Gi with a 2Gi limit, 1Gi used of which 256Mi inactive file.
		{name: "cgroup v1", tree: "v1", cpuMilli: 1500, memory: 2 * gi, available: 2*gi - (gi - 256*mi)},
		// 4 CPUs, cpuset 0-1, cpu.max 50000 100000; 4Gi, the parent slice's memory.max 1Gi, 200Mi used, 100Mi inactive.
		{name: "cgroup v2", tree: "v2", cpuMilli: 500, memory: gi, available: gi - 100*mi},
		// This machine's shape: v1 limits win over decoys in the empty unified hierarchy.
		{name: "hybrid", tree: "hybrid", cpuMilli: 250, memory: 512 * mi, available: 512*mi - (4919296 - 1376256)},
		{name: "no limit v1", tree: "nolimit-v1", cpuMilli: 2000, memory: 2048000 * 1024, available: 1024000 * 1024},
		{name: "no limit v2", tree: "nolimit-v2", cpuMilli: 6000, memory: 2048000 * 1024, available: 1024000 * 1024},
		// A container without a cgroup namespace: the mount's root is the container's cgroup.
		{name: "container without cgroupns", tree: "docker-v1", cpuMilli: 2000, memory: 256 * mi, available: 192 * mi},
		// Cgroup names another cgroup than the agent's: the v1 tree's root, which has no limits.
		{name: "cgroup override", tree: "v1", cgroup: "/", cpuMilli: 4000, memory: 8 * gi, available: 6 * gi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMonitor(filepath.Join("testdata", tc.tree))
			m.Cgroup = tc.cgroup
			got, err := m.Capacity()
			if err != nil {
				t.Fatal(err)
			}
			want := Resources{CPUMilli: tc.cpuMilli, MemoryBytes: tc.memory, Pods: DefaultMaxPods, EphemeralStorageBytes: 100 * gi}
			if got != want {
				t.Errorf("Capacity() = %+v, want %+v", got, want)
			}
			avail, err := m.memoryAvailable()
			if err != nil {
				t.Fatal(err)
			}
			if avail != tc.available {
				t.Errorf("memoryAvailable() = %d, want %d", avail, tc.available)
			}
		})
	}
}

func TestCapacityErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *Monitor, root string)
		want   string
	}{
		{name: "no online CPUs", change: func(_ *Monitor, root string) { os.Remove(filepath.Join(root, "sys/devices/system/cpu/online")) }, want: "online CPUs"},
		{name: "bad quota", change: func(_ *Monitor, root string) {
			os.WriteFile(filepath.Join(root, "sys/fs/cgroup/feather.slice/agent.service/cpu.max"), []byte("lots 100000\n"), 0o644)
		}, want: "cpu.max"},
		{name: "no meminfo", change: func(_ *Monitor, root string) { os.Remove(filepath.Join(root, "proc/meminfo")) }, want: "read memory"},
		{name: "no storage dir", change: func(m *Monitor, _ string) { m.StorageDir = "" }, want: "StorageDir"},
		{name: "statfs fails", change: func(m *Monitor, _ string) {
			m.statfs = func(string) (fsStats, error) { return fsStats{}, fs.ErrNotExist }
		}, want: "/var/lib/feather"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTree(t, "v2")
			m := testMonitor(root)
			tc.change(m, root)
			_, err := m.Capacity()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Capacity() error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestAllocatable(t *testing.T) {
	capacity := Resources{CPUMilli: 2000, MemoryBytes: 2 * gi, Pods: 110, EphemeralStorageBytes: 100 * gi}
	for _, tc := range []struct {
		name   string
		change func(m *Monitor)
		want   Resources
	}{
		{name: "kubelet defaults", change: func(*Monitor) {},
			want: Resources{CPUMilli: 2000, MemoryBytes: 2*gi - 100*mi, Pods: 110, EphemeralStorageBytes: 90 * gi}},
		{name: "reserved", change: func(m *Monitor) { m.Reserved = Resources{CPUMilli: 500, MemoryBytes: 256 * mi, Pods: 10} },
			want: Resources{CPUMilli: 1500, MemoryBytes: 2*gi - 356*mi, Pods: 100, EphemeralStorageBytes: 90 * gi}},
		{name: "no thresholds", change: func(m *Monitor) { m.Thresholds = Thresholds{} }, want: capacity},
		{name: "never negative", change: func(m *Monitor) { m.Reserved = Resources{CPUMilli: 4000, MemoryBytes: 4 * gi} },
			want: Resources{Pods: 110, EphemeralStorageBytes: 90 * gi}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMonitor("/")
			tc.change(m)
			if got := m.Allocatable(capacity); got != tc.want {
				t.Errorf("Allocatable() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestInternalIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		route   string
		want    string
		wantErr string
	}{
		// testdata: eth0 (metric 100) and wlan0 (metric 600) hold default routes; the lower metric wins.
		{name: "lowest metric", want: "192.0.2.10"},
		{name: "no default route", route: "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
			"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", wantErr: "no IPv4 default route"},
		{name: "default route down", route: "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
			"eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n", wantErr: "no IPv4 default route"},
		{name: "interface without IPv4", route: "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
			"wlan0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", wantErr: "addresses of wlan0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTree(t, "v1")
			if tc.route != "" {
				writeFile(t, root, "proc/net/route", tc.route)
			}
			got, err := testMonitor(root).InternalIP()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("InternalIP() = %q, %v; want error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("InternalIP() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSystemInfo(t *testing.T) {
	root := copyTree(t, "v1")
	m := testMonitor(root)
	got := m.systemInfo()
	if got.KernelVersion != "6.1.0-18-amd64" || got.OSImage != "Debian GNU/Linux 12 (bookworm)" ||
		got.MachineID != "0a1b2c3d4e5f60718293a4b5c6d7e8f9" || got.BootID != "9f2c1c1e-5b1a-4f7e-8d1e-2f6b1b7a4c3d" ||
		got.OperatingSystem != runtime.GOOS || got.Architecture != runtime.GOARCH {
		t.Errorf("systemInfo() = %+v", got)
	}

	// os-release falls back to /usr/lib/os-release, and single quotes are allowed.
	os.Remove(filepath.Join(root, "etc/os-release"))
	os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
	writeFile(t, root, "usr/lib/os-release", "NAME=Alpine\nPRETTY_NAME='Alpine Linux v3.20'\n")
	if got := m.osImage(); got != "Alpine Linux v3.20" {
		t.Errorf("osImage() = %q, want Alpine Linux v3.20", got)
	}
	os.Remove(filepath.Join(root, "usr/lib/os-release"))
	if got := m.osImage(); got != "Linux" {
		t.Errorf("osImage() without os-release = %q, want Linux", got)
	}
}

func TestPIDs(t *testing.T) {
	root := copyTree(t, "v1")
	m := testMonitor(root)
	limit, used, err := m.pids()
	if err != nil || limit != 32768 || used != 105 {
		t.Fatalf("pids() = %d, %d, %v; want 32768, 105", limit, used, err)
	}
	writeFile(t, root, "proc/sys/kernel/threads-max", "1000\n")
	if limit, _, _ := m.pids(); limit != 1000 {
		t.Errorf("pids() limit = %d, want threads-max 1000", limit)
	}
	writeFile(t, root, "proc/loadavg", "garbage\n")
	if _, _, err := m.pids(); err == nil {
		t.Error("pids() with a bad /proc/loadavg: no error")
	}
}

func TestCountCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		bad  bool
	}{
		{in: "0", want: 1},
		{in: "0-1", want: 2},
		{in: "0-3,8,10-11\n", want: 7},
		{in: "", want: 0},
		{in: "3-1", bad: true},
		{in: "a-b", bad: true},
	} {
		got, err := countCPUList(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("countCPUList(%q) = %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/sys/fs/cgroup":         "/sys/fs/cgroup",
		`/mnt/with\040space`:     "/mnt/with space",
		`/back\134slash`:         `/back\slash`,
		`/trailing\04`:           `/trailing\04`,
		`/sys/fs/cgroup/cpu,cpu`: "/sys/fs/cgroup/cpu,cpu",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHostMonitor measures this machine, to see the real files parse.
func TestHostMonitor(t *testing.T) {
	prereq.Check(t, runtime.GOOS == "linux", "reads Linux's /proc and /sys")
	m := NewMonitor(t.TempDir())
	c, err := m.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	if c.CPUMilli <= 0 || c.CPUMilli > int64(runtime.NumCPU())*1000 || c.MemoryBytes <= 0 || c.EphemeralStorageBytes <= 0 {
		t.Errorf("Capacity() = %+v", c)
	}
	s := m.measure()
	if s.memErr != nil || s.storageErr != nil || s.pidErr != nil {
		t.Errorf("measure() errors: %v, %v, %v", s.memErr, s.storageErr, s.pidErr)
	}
	if info := m.systemInfo(); info.KernelVersion == "" {
		t.Errorf("systemInfo() = %+v: no kernel version", info)
	}
	t.Logf("capacity %+v, allocatable %+v, memory available %d", c, m.Allocatable(c), s.memAvailable)
}
