package cgroup

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/feather-edge/feather/internal/prereq"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The v1 hierarchies of a fake host, one directory per controller.
var fakeV1 = []string{
	"systemd", "freezer", "pids", "net_cls", "net_prio", "perf_event", "cpuset", "cpu", "cpuacct", "memory",
	"blkio", "rdma", "devices", "hugetlb",
}

// newFakeV1 makes a fake v1 host in root: a directory per hierarchy, the
// root cpuset with CPUs and memory nodes. It returns its Hierarchy.
func newFakeV1(t *testing.T, root string) *Hierarchy {
	t.Helper()
	h := &Hierarchy{}
	for _, name := range fakeV1 {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ctrl := name
		if name == "systemd" {
			ctrl = "name=systemd"
		}
		h.V1 = append(h.V1, Mount{Dir: dir, Controllers: []string{ctrl}})
	}
	writeFile(t, filepath.Join(root, "cpuset", "cpuset.cpus"), "0-1\n")
	writeFile(t, filepath.Join(root, "cpuset", "cpuset.mems"), "0\n")
	return h
}

// containerdV1 is containerd's cgroup1 hierarchy over the fake v1 host in
// root, the reference the package's files are compared with.
func containerdV1(t *testing.T, root string) cgroup1.InitOpts {
	t.Helper()
	hugetlb, err := cgroup1.NewHugetlb(root)
	if err != nil {
		t.Fatal(err)
	}
	subsystems := []cgroup1.Subsystem{
		cgroup1.NewNamed(root, "systemd"), cgroup1.NewFreezer(root), cgroup1.NewPids(root),
		cgroup1.NewNetCls(root), cgroup1.NewNetPrio(root), cgroup1.NewPerfEvent(root), cgroup1.NewCpuset(root),
		cgroup1.NewCpu(root), cgroup1.NewCpuacct(root), cgroup1.NewMemory(root), cgroup1.NewBlkio(root),
		cgroup1.NewRdma(root), cgroup1.NewDevices(root), hugetlb,
	}
	return cgroup1.WithHiearchy(func() ([]cgroup1.Subsystem, error) { return subsystems, nil })
}

// newFakeV2 makes a fake v2 host in root whose cgroup parent (the pod's)
// already exists, as the kubelet or the agent makes it.
func newFakeV2(t *testing.T, root, parent string) *Hierarchy {
	t.Helper()
	writeFile(t, filepath.Join(root, "cgroup.subtree_control"), "")
	p := root
	for _, name := range strings.Split(strings.Trim(parent, "/"), "/") {
		p = filepath.Join(p, name)
		writeFile(t, filepath.Join(p, "cgroup.subtree_control"), "")
	}
	return &Hierarchy{Unified: root}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dump lists every directory and file below root with the file's content,
// one per line, sorted.
func dump(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			lines = append(lines, rel+"/")
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lines = append(lines, rel+": "+strings.TrimSuffix(string(data), "\n"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		writeFile(t, file, got)
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("files written differ from %s:\n got:\n%s\nwant:\n%s", file, got, want)
	}
}

func u64p(v uint64) *uint64 { return &v }
func i64p(v int64) *int64   { return &v }
func u16p(v uint16) *uint16 { return &v }
func u32p(v uint32) *uint32 { return &v }

// resourceCases are the resources the create tests write, from what the
// kubelet and the agent send for a container to the rarely set ones.
var resourceCases = []struct {
	name string
	res  *specs.LinuxResources
}{
	{name: "none", res: nil},
	{name: "kubelet-besteffort", res: &specs.LinuxResources{
		CPU:            &specs.LinuxCPU{Shares: u64p(2), Period: u64p(100000)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}, {Pagesize: "1GB", Limit: 0}},
	}},
	{name: "kubelet-limits", res: &specs.LinuxResources{
		CPU: &specs.LinuxCPU{Shares: u64p(512), Quota: i64p(50000), Period: u64p(100000), Cpus: "1", Mems: "0"},
		Memory: &specs.LinuxMemory{
			Limit: i64p(402653184), Reservation: i64p(134217728), Swappiness: u64p(0),
			DisableOOMKiller: func() *bool { b := false; return &b }(),
		},
		Pids:           &specs.LinuxPids{Limit: i64p(1024)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4194304}},
	}},
	{name: "swap-oom-realtime", res: &specs.LinuxResources{
		CPU: &specs.LinuxCPU{Quota: i64p(-1), Period: u64p(50000), RealtimePeriod: u64p(1000000),
			RealtimeRuntime: i64p(950000)},
		Memory: &specs.LinuxMemory{Limit: i64p(1 << 30), Swap: i64p(2 << 30),
			DisableOOMKiller: func() *bool { b := true; return &b }()},
		Pids: &specs.LinuxPids{Limit: i64p(-1)},
	}},
	{name: "blkio-net-rdma", res: &specs.LinuxResources{
		BlockIO: &specs.LinuxBlockIO{
			Weight: u16p(500), LeafWeight: u16p(300),
			WeightDevice: []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: u16p(200), LeafWeight: u16p(100)}},
			// One throttled device: a fake cgroupfs file keeps only the last
			// line written, and containerd's cgroup2 writes v2's in map order.
			ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1048576}},
		},
		Network: &specs.LinuxNetwork{ClassID: u32p(0x100001), Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 5}}},
		Rdma:    map[string]specs.LinuxRdma{"mlx5_0": {HcaHandles: u32p(3), HcaObjects: u32p(1000)}},
	}},
}

const testPath = "/kubepods/pod1/ctr"

// TestNewV1 writes each case's resources into a fake v1 host, compares
// the files with the golden ones and with what containerd's cgroup1
// package writes for the same resources.
func TestNewV1(t *testing.T) {
	for _, tc := range resourceCases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			cg, err := newFakeV1(t, root).New(testPath, tc.res)
			if err != nil {
				t.Fatal(err)
			}
			if cg.Unified() || cg.Path() != testPath {
				t.Errorf("cgroup %q unified %v, want %q on v1", cg.Path(), cg.Unified(), testPath)
			}
			got := dump(t, root)
			golden(t, "new-v1-"+tc.name+".golden", got)

			ref := t.TempDir()
			newFakeV1(t, ref)
			res := tc.res
			if res == nil {
				res = &specs.LinuxResources{}
			}
			if _, err := cgroup1.New(cgroup1.StaticPath(testPath), res, containerdV1(t, ref)); err != nil {
				t.Fatal(err)
			}
			if want := dump(t, ref); got != want {
				t.Errorf("files differ from containerd's cgroup1:\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestNewV2 does the same on a fake v2 host, against containerd's cgroup2
// package with the spec's resources converted as containerd converts them.
func TestNewV2(t *testing.T) {
	for _, tc := range resourceCases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			cg, err := newFakeV2(t, root, filepath.Dir(testPath)).New(testPath, tc.res)
			if err != nil {
				t.Fatal(err)
			}
			if !cg.Unified() {
				t.Error("cgroup on a v2 host is not unified")
			}
			got := dump(t, root)
			golden(t, "new-v2-"+tc.name+".golden", got)

			ref := t.TempDir()
			newFakeV2(t, ref, filepath.Dir(testPath))
			res := tc.res
			if res == nil {
				res = &specs.LinuxResources{}
			}
			if _, err := cgroup2.NewManager(ref, testPath, cgroup2.ToResources(res)); err != nil {
				t.Fatal(err)
			}
			if want := dump(t, ref); got != want {
				t.Errorf("files differ from containerd's cgroup2:\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		h          func(t *testing.T, root string) *Hierarchy
	}{
		{name: "empty path", path: "", h: newFakeV1Func},
		{name: "root path", path: "/", h: newFakeV1Func},
		{name: "no hierarchy", path: testPath, h: func(*testing.T, string) *Hierarchy { return &Hierarchy{} }},
		{name: "v2 parent not a cgroup", path: testPath, h: func(_ *testing.T, root string) *Hierarchy {
			return &Hierarchy{Unified: root} // no cgroup.subtree_control files
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			limit := int64(1 << 30)
			res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
			if _, err := tc.h(t, root).New(tc.path, res); err == nil {
				t.Fatal("New succeeded")
			}
			if tc.path == testPath {
				if _, err := os.Stat(filepath.Join(root, testPath)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("failed New left %s: %v", testPath, err)
				}
			}
		})
	}
}

func newFakeV1Func(t *testing.T, root string) *Hierarchy { return newFakeV1(t, root) }

// TestLifecycle adds a process, lists it, refuses to delete a cgroup with
// a process in it, and deletes it once empty, on both versions.
func TestLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    func(t *testing.T, root string) *Hierarchy
	}{
		{name: "v1", h: newFakeV1Func},
		{name: "v2", h: func(t *testing.T, root string) *Hierarchy { return newFakeV2(t, root, filepath.Dir(testPath)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			h := tc.h(t, root)
			if _, err := h.Load(testPath); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Load before New: %v, want ErrNotExist", err)
			}
			cg, err := h.New(testPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := cg.Add(4242); err != nil {
				t.Fatal(err)
			}
			// A child cgroup's process counts too (virtiofsd's sandbox).
			child := filepath.Join(cg.dirs[0], "sub")
			writeFile(t, filepath.Join(child, "cgroup.procs"), "4343\n")
			loaded, err := h.Load(testPath)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(loaded.dirs, cg.dirs) {
				t.Errorf("Load found %v, New made %v", loaded.dirs, cg.dirs)
			}
			pids, err := loaded.Procs()
			if err != nil {
				t.Fatal(err)
			}
			sort.Ints(pids)
			if want := []int{4242, 4343}; !reflect.DeepEqual(pids, want) {
				t.Errorf("Procs = %v, want %v", pids, want)
			}
			if err := loaded.Delete(); !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("Delete with processes: %v, want ErrFailedPrecondition", err)
			}
			for _, dir := range cg.dirs {
				writeFile(t, filepath.Join(dir, "cgroup.procs"), "")
			}
			writeFile(t, filepath.Join(child, "cgroup.procs"), "")
			if err := loaded.Delete(); err != nil {
				t.Fatal(err)
			}
			for _, dir := range cg.dirs {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s after Delete: %v", dir, err)
				}
			}
			if _, err := os.Stat(filepath.Dir(cg.dirs[0])); err != nil {
				t.Errorf("Delete removed the parent: %v", err)
			}
			if err := loaded.Delete(); err != nil {
				t.Errorf("second Delete: %v", err)
			}
			if _, err := loaded.Procs(); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Procs after Delete: %v, want ErrNotExist", err)
			}
		})
	}
}

// copyTree copies the directory tree src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(dst, rel), string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStatsV1 reads testdata/stats-v1 (files of a cgroup on a v1 host) and
// compares the metrics with what containerd's cgroup1 package reads from
// the same files, and a few fields with the files themselves.
func TestStatsV1(t *testing.T) {
	root := t.TempDir()
	h := newFakeV1(t, root)
	copyTree(t, filepath.Join("testdata", "stats-v1"), root)
	cg, err := h.Load("/pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := msg.(*v1.Metrics)
	if !ok {
		t.Fatalf("Stats = %T, want *v1.Metrics", msg)
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"cpu total", got.GetCPU().GetUsage().GetTotal(), 813744371006},
		{"cpu user", got.GetCPU().GetUsage().GetUser(), 664260000000},
		{"memory usage", got.GetMemory().GetUsage().GetUsage(), readTestUint(t, "stats-v1/memory/pod/ctr/memory.usage_in_bytes")},
		{"memory limit", got.GetMemory().GetUsage().GetLimit(), 9223372036854771712},
		{"total rss", got.GetMemory().GetTotalRSS(), statValue(t, "stats-v1/memory/pod/ctr/memory.stat", "total_rss")},
		{"pids", got.GetPids().GetCurrent(), 3},
		{"pids limit (max)", got.GetPids().GetLimit(), 0},
		{"hugetlb sizes", uint64(len(got.GetHugetlb())), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	wantHuge := []*v1.HugetlbStat{
		{Pagesize: "1GB", Usage: 4194304, Max: 6291456, Failcnt: 2},
		{Pagesize: "2MB", Usage: 4194304, Max: 6291456, Failcnt: 2},
	}
	for i, w := range wantHuge {
		if i >= len(got.Hugetlb) || !proto.Equal(got.Hugetlb[i], w) {
			t.Errorf("hugetlb = %v, want %v", got.Hugetlb, wantHuge)
			break
		}
	}

	ref, err := cgroup1.Load(cgroup1.StaticPath("/pod/ctr"), containerdV1(t, root))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		t.Fatal(err)
	}
	// containerd's library takes the huge page sizes from the host's
	// /sys/kernel/mm/hugepages, not from the cgroup: compared above.
	got.Hugetlb, want.Hugetlb = nil, nil
	if !proto.Equal(got, want) {
		t.Errorf("metrics differ from containerd's cgroup1:\n got: %v\nwant: %v", got, want)
	}
}

// TestStatsV2 does the same for testdata/stats-v2 against cgroup2.
func TestStatsV2(t *testing.T) {
	root := t.TempDir()
	copyTree(t, filepath.Join("testdata", "stats-v2"), root)
	cg, err := (&Hierarchy{Unified: root}).Load("/pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := msg.(*v2.Metrics)
	if !ok {
		t.Fatalf("Stats = %T, want *v2.Metrics", msg)
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"cpu usage", got.GetCPU().GetUsageUsec(), 1843021},
		{"memory usage", got.GetMemory().GetUsage(), 18874368},
		{"memory limit", got.GetMemory().GetUsageLimit(), 402653184},
		{"swap limit (max)", got.GetMemory().GetSwapLimit(), ^uint64(0)},
		{"anon", got.GetMemory().GetAnon(), 4304896},
		{"inactive file", got.GetMemory().GetInactiveFile(), 262144},
		{"pgmajfault", got.GetMemory().GetPgmajfault(), 11},
		{"pids", got.GetPids().GetCurrent(), 5},
		{"oom kills", got.GetMemoryEvents().GetOomKill(), 1},
		{"io devices", uint64(len(got.GetIo().GetUsage())), 2},
		{"cpu pressure total", got.GetCPU().GetPSI().GetSome().GetTotal(), 120345},
		{"hugetlb sizes", uint64(len(got.GetHugetlb())), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}

	ref, err := cgroup2.Load("/pod/ctr", cgroup2.WithMountpoint(root))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Stat()
	if err != nil {
		t.Fatal(err)
	}
	got.Hugetlb, want.Hugetlb = nil, nil
	if !proto.Equal(got, want) {
		t.Errorf("metrics differ from containerd's cgroup2:\n got: %v\nwant: %v", got, want)
	}
}

func readTestUint(t *testing.T, name string) uint64 {
	t.Helper()
	v, err := readUint(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func statValue(t *testing.T, name, key string) uint64 {
	t.Helper()
	kv, err := readKV(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return kv[key]
}

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []Mount
	}{
		{file: "mountinfo-hybrid", want: []Mount{
			{"/sys/fs/cgroup/cpu", []string{"cpu"}}, {"/sys/fs/cgroup/cpuacct", []string{"cpuacct"}},
			{"/sys/fs/cgroup/cpuset", []string{"cpuset"}}, {"/sys/fs/cgroup/memory", []string{"memory"}},
			{"/sys/fs/cgroup/devices", []string{"devices"}}, {"/sys/fs/cgroup/freezer", []string{"freezer"}},
			{"/sys/fs/cgroup/blkio", []string{"blkio"}}, {"/sys/fs/cgroup/pids", []string{"pids"}},
			{"/sys/fs/cgroup/systemd", []string{"name=systemd"}},
		}},
		{file: "mountinfo-combined", want: []Mount{
			{"/sys/fs/cgroup/systemd", []string{"name=systemd"}},
			{"/sys/fs/cgroup/cpu,cpuacct", []string{"cpu", "cpuacct"}},
			{"/sys/fs/cgroup/memory", []string{"memory"}},
			{"/sys/fs/cgroup/net_cls,net_prio", []string{"net_cls", "net_prio"}},
			{"/sys/fs/cgroup/misc", []string{"misc"}},
			{"/sys/fs/cgroup/cpuset", []string{"cpuset"}}, {"/sys/fs/cgroup/pids", []string{"pids"}},
			{"/sys/fs/cgroup/hugetlb", []string{"hugetlb"}}, {"/sys/fs/cgroup/devices", []string{"devices"}},
			{"/sys/fs/cgroup/freezer", []string{"freezer"}}, {"/sys/fs/cgroup/blkio", []string{"blkio"}},
			{"/sys/fs/cgroup/perf_event", []string{"perf_event"}}, {"/sys/fs/cgroup/rdma", []string{"rdma"}},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseMountinfo(f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseMountinfo =\n%v\nwant\n%v", got, tc.want)
			}
			// misc is no hierarchy a cgroup is made in.
			h := &Hierarchy{V1: got}
			for _, m := range h.mounts() {
				if m.has("misc") {
					t.Errorf("mounts() includes %v", m)
				}
			}
		})
	}
	if got := unescapeMountinfo(`/run/misc\040copy`); got != "/run/misc copy" {
		t.Errorf("unescape = %q", got)
	}
}

// TestHost makes a real cgroup on this host with a memory limit, moves a
// process into it, reads its metrics and deletes it. It changes the host,
// so it runs only with FEATHER_E2E=required (under the e2e lock).
func TestHost(t *testing.T) {
	prereq.Check(t, prereq.Required(), "creates a cgroup on the host: runs with "+prereq.Env+"=required")
	prereq.Root(t)
	h, err := Host()
	if err != nil {
		t.Fatal(err)
	}
	path := "/feather-test/cgroup-" + strings.ReplaceAll(t.Name(), "/", "-")
	limit := int64(64 << 20)
	cg, err := h.New(path, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		CPU:    &specs.LinuxCPU{Shares: u64p(256), Cpus: "0", Mems: "0"},
		Pids:   &specs.LinuxPids{Limit: i64p(16)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Delete(); err != nil {
			t.Error(err)
		}
		for _, m := range h.mounts() {
			_ = os.Remove(filepath.Join(m.Dir, "feather-test"))
		}
		if h.Unified != "" {
			_ = os.Remove(filepath.Join(h.Unified, "feather-test"))
		}
	})
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	if err := cg.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := cg.Procs()
	if err != nil || !reflect.DeepEqual(pids, []int{cmd.Process.Pid}) {
		t.Fatalf("Procs = %v, %v, want [%d]", pids, err, cmd.Process.Pid)
	}
	msg, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var memLimit, pidsNow uint64
	switch m := msg.(type) {
	case *v1.Metrics:
		memLimit, pidsNow = m.GetMemory().GetUsage().GetLimit(), m.GetPids().GetCurrent()
	case *v2.Metrics:
		memLimit, pidsNow = m.GetMemory().GetUsageLimit(), m.GetPids().GetCurrent()
	}
	if memLimit != uint64(limit) || pidsNow != 1 {
		t.Errorf("metrics: memory limit %d, pids %d; want %d, 1", memLimit, pidsNow, limit)
	}
	if err := cg.Delete(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Delete with a process: %v, want ErrFailedPrecondition", err)
	}
	_ = cmd.Process.Kill()
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := cg.Procs()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed process still in the cgroup: %v", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Load(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load after Delete: %v, want ErrNotExist", err)
	}
}
