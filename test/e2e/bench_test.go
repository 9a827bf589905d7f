package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/test/leak"
)

// benchWorkload is one way to run the same small program.
type benchWorkload struct {
	name, runtime, ref string
	hello, sleep       []string // print one line and exit; sleep long
	marker             string   // hello's line
	shim, vmm          string   // executables: the shim, and the VMM (or "")
	// withIO gives each idle copy a NIC (a network namespace of its own)
	// and one virtio-fs share, as a pod has.
	withIO bool
}

const busyboxRef = "docker.io/feather/busybox:bench"

var benchWorkloads = []benchWorkload{
	{"runc container", "io.containerd.runc.v2", busyboxRef,
		[]string{"echo", "hello from feather guest"}, []string{"sleep", "600"}, "hello from feather guest", "containerd-shim-runc-v2", "", false},
	{"test guest, direct boot", osvRuntime, directRef, []string{"/hello"}, []string{"/sleep", "600"}, "hello from feather guest", "containerd-shim-osv-v1", "qemu-system-x86_64", false},
	{"test guest, disk boot", osvRuntime, diskRef, []string{"/hello"}, []string{"/sleep", "600"}, "hello from feather guest", "containerd-shim-osv-v1", "qemu-system-x86_64", false},
	{"real OSv, direct boot", osvRuntime, harness.RealOSvDirectRef, []string{"/exitcall", "0"}, []string{"/minimal"}, "exitcall: calling exit(0)", "containerd-shim-osv-v1", "qemu-system-x86_64", true},
	{"real OSv, disk boot", osvRuntime, harness.RealOSvDiskRef, []string{"/exitcall", "0"}, []string{"/minimal"}, "exitcall: calling exit(0)", "containerd-shim-osv-v1", "qemu-system-x86_64", true},
}

// BenchmarkStartAndFootprint prints, for a runc container and the test
// guest's two OSv boot modes side by side: the time from task create to the
// first console line and to the program's output, and, with three of each
// running idle at once, the RSS of each one's shim and VMM.
func BenchmarkStartAndFootprint(b *testing.B) {
	env, ctrd := osvEnv(b)
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ctx = namespaces.WithNamespace(ctx, ns)
	img := filepath.Join(b.TempDir(), "busybox.tar")
	if err := harness.WriteBusyboxImage(img, busyboxRef); err != nil {
		b.Fatal(err)
	}
	if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", img); err != nil {
		b.Fatal(err)
	}
	disk, direct, err := harness.WriteRealOSvImages(ctx, harness.RealOSv(b), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, tarball := range []string{disk, direct} {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", tarball); err != nil {
			b.Fatal(err)
		}
	}
	const runs, idle = 5, 3
	type row struct {
		first, app []time.Duration
		shim, vmm  []mem
	}
	rows := make([]row, len(benchWorkloads))
	for b.Loop() {
		for i, w := range benchWorkloads {
			for n := range runs {
				first, app := timeHello(ctx, b, ctrd.Client(), w, fmt.Sprintf("bench-%d-%d", i, n))
				rows[i].first = append(rows[i].first, first)
				rows[i].app = append(rows[i].app, app)
			}
		}
		for i, w := range benchWorkloads {
			rows[i].shim, rows[i].vmm = idleRSS(ctx, b, ctrd.Client(), w, idle, fmt.Sprintf("idle-%d", i))
		}
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(os.Stdout, "\nStart (median of %d, create → line, TCG unless /run/feather/accel says kvm) and idle footprint (mean of %d running at once; real OSv idle: /minimal with a NIC and one virtio-fs share):\n", runs, idle)
	fmt.Fprintln(tw, "workload\tcreate→first line\tcreate→program output\tshim RSS\tshim PSS\tshim anon\tshim file-backed\tshim binary\tVMM RSS\tVMM PSS\t")
	for i, w := range benchWorkloads {
		vmm, vmmPSS := "-", "-"
		if w.vmm != "" {
			vmm, vmmPSS = mib(rows[i].vmm, mem.rss), mib(rows[i].vmm, mem.pss)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", w.name, median(rows[i].first), median(rows[i].app),
			mib(rows[i].shim, mem.rss), mib(rows[i].shim, mem.pss), mib(rows[i].shim, mem.anon), mib(rows[i].shim, mem.file),
			mib(rows[i].shim, mem.exe), vmm, vmmPSS)
	}
	tw.Flush()
	fmt.Println("RSS counts every mapped page of the binary (file-backed: RSS − anon; on this kernel most of the binary once mapped); PSS shares those among the processes mapping them; anon is the process's own memory.")
}

// timeHello runs w.hello once and returns the time from task create to its
// first stdout line and to the line with the program's output.
func timeHello(ctx context.Context, b *testing.B, cl *client.Client, w benchWorkload, id string) (first, app time.Duration) {
	b.Helper()
	c := newBenchContainer(ctx, b, cl, w, id, w.hello)
	r, wr := io.Pipe()
	lines := make(chan time.Time, 1)
	appSeen := make(chan time.Time, 1)
	go func() {
		s := bufio.NewScanner(r)
		seen := false
		for s.Scan() {
			if !seen {
				lines <- time.Now()
				seen = true
			}
			if strings.Contains(s.Text(), w.marker) {
				appSeen <- time.Now()
			}
		}
	}()
	start := time.Now()
	task, err := c.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, wr, io.Discard)))
	if err != nil {
		b.Fatal(err)
	}
	exit, err := task.Wait(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		b.Fatal(err)
	}
	st := <-exit
	if st.ExitCode() != 0 {
		b.Fatalf("%s: exit %d", w.name, st.ExitCode())
	}
	if _, err := task.Delete(ctx); err != nil {
		b.Fatal(err)
	}
	wr.Close()
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		b.Fatal(err)
	}
	select {
	case t1 := <-lines:
		first = t1.Sub(start)
	default:
		b.Fatalf("%s: no output", w.name)
	}
	select {
	case t2 := <-appSeen:
		app = t2.Sub(start)
	case <-time.After(5 * time.Second):
		b.Fatalf("%s: no program output", w.name)
	}
	return first, app
}

// idleRSS runs n copies of w.sleep at once, lets them settle, and returns
// the RSS (KiB) of each one's shim and VMM.
func idleRSS(ctx context.Context, b *testing.B, cl *client.Client, w benchWorkload, n int, prefix string) (shim, vmm []mem) {
	b.Helper()
	var tasks []client.Task
	var containers []client.Container
	defer func() {
		for _, t := range tasks {
			t.Kill(ctx, 9)
			if ch, err := t.Wait(ctx); err == nil {
				<-ch
			}
			t.Delete(ctx)
		}
		for _, c := range containers {
			c.Delete(ctx, client.WithSnapshotCleanup)
		}
	}()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		var opts []oci.SpecOpts
		if w.withIO {
			opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: benchNetNS(b, id)}),
				oci.WithMounts([]specs.Mount{{Type: "bind", Source: b.TempDir(), Destination: "/data", Options: []string{"rbind", "ro"}}}))
		}
		c := newBenchContainer(ctx, b, cl, w, id, w.sleep, opts...)
		containers = append(containers, c)
		task, err := c.NewTask(ctx, cio.NullIO)
		if err != nil {
			b.Fatal(err)
		}
		tasks = append(tasks, task)
		if err := task.Start(ctx); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Idle means booted and sleeping: 10 s covers a TCG boot of either image
	// with room to spare; a benchmark may wait for what it measures.
	time.Sleep(10 * time.Second)
	for _, id := range ids {
		shim = append(shim, rssOf(b, w.shim, "-id "+id+" "))
		if w.vmm != "" {
			vmm = append(vmm, rssOf(b, w.vmm, "-name feather-"+id+" "))
		}
	}
	return shim, vmm
}

func newBenchContainer(ctx context.Context, b *testing.B, cl *client.Client, w benchWorkload, id string, args []string, opts ...oci.SpecOpts) client.Container {
	b.Helper()
	image, err := cl.GetImage(ctx, w.ref)
	if err != nil {
		b.Fatal(err)
	}
	c, err := cl.NewContainer(ctx, id,
		client.WithImage(image),
		client.WithImageConfigLabels(image),
		client.WithNewSnapshot(id, image),
		client.WithRuntime(w.runtime, nil),
		client.WithNewSpec(append([]oci.SpecOpts{oci.WithImageConfig(image), oci.WithProcessArgs(args...)}, opts...)...))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// mem is a process's memory, in KiB, from /proc/PID/smaps_rollup, and the
// size of its executable (KiB), whose pages make most of a Go program's RSS.
type mem struct{ RSS, PSS, Anon, Exe int64 }

// rssOf returns the memory of the one process running exe whose command
// line contains marker.
func rssOf(b *testing.B, exe, marker string) mem {
	b.Helper()
	procs, err := leak.Named(exe)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range procs {
		if strings.Contains(p.Cmdline+" ", marker) {
			return memOf(b, p.Pid)
		}
	}
	b.Fatalf("no %s process with %q", exe, marker)
	return mem{}
}

// memOf returns the memory of process pid.
func memOf(b testing.TB, pid int) mem {
	b.Helper()
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	var m mem
	if fi, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		m.Exe = fi.Size() >> 10
	}
	for _, line := range strings.Split(string(rollup), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			m.RSS = kb
		case "Pss:":
			m.PSS = kb
		case "Anonymous:":
			m.Anon = kb
		}
	}
	return m
}

func median(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond).String()
}

// mib formats the mean of field over ms.
func mib(ms []mem, field func(mem) int64) string {
	var sum int64
	for _, m := range ms {
		sum += field(m)
	}
	return fmt.Sprintf("%.1f MiB", float64(sum)/float64(len(ms))/1024)
}

func (m mem) rss() int64  { return m.RSS }
func (m mem) pss() int64  { return m.PSS }
func (m mem) anon() int64 { return m.Anon }
func (m mem) file() int64 { return m.RSS - m.Anon }
func (m mem) exe() int64  { return m.Exe }

// benchNetNS makes a network namespace for a VM, as CNI would for a pod:
// eth0 with an address and a default route (its veth peer stays inside),
// removed when the benchmark ends.
func benchNetNS(b *testing.B, id string) string {
	b.Helper()
	name := fmt.Sprintf("feather-bench-%d-%s", os.Getpid(), id)
	ip := func(args ...string) {
		b.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", name)
	b.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	ip("-n", name, "addr", "add", "10.99.78.2/24", "dev", "eth0")
	ip("-n", name, "link", "set", "eth0", "up")
	ip("-n", name, "link", "set", "peer0", "up")
	ip("-n", name, "route", "add", "default", "via", "10.99.78.1")
	return filepath.Join("/var/run/netns", name)
}
