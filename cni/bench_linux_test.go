package cni

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BenchmarkPodNetwork prints what a pod's network costs with the default
// configuration and Debian's plugins: a network namespace made and removed,
// ADD and DEL — with no hostPort, and with one (portmap's iptables rules) —
// beside the namespace alone as the baseline, median of runs in this process.
func BenchmarkPodNetwork(b *testing.B) {
	requiresPlugins(b)
	const runs = 20
	tn := newTestNetwork(b)
	ctx := context.Background()
	dir := b.TempDir()
	type times struct{ mk, add, del, rm, total []time.Duration }
	var base, plain, ported times
	cycle := func(i int, withCNI bool, ports []PortMapping, into *times) {
		p := filepath.Join(dir, fmt.Sprint(i))
		t0 := time.Now()
		if err := mkNetNS(p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		pod := Pod{UID: fmt.Sprintf("bench-%d", i), Namespace: "bench", Name: fmt.Sprint(i), NetNS: p, PortMappings: ports}
		if withCNI {
			if _, err := tn.m.Setup(ctx, pod); err != nil {
				b.Fatal(err)
			}
		}
		t2 := time.Now()
		if withCNI {
			if err := tn.m.Teardown(ctx, pod); err != nil {
				b.Fatal(err)
			}
		}
		t3 := time.Now()
		if err := rmNetNS(p); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		into.mk, into.add = append(into.mk, t1.Sub(t0)), append(into.add, t2.Sub(t1))
		into.del, into.rm = append(into.del, t3.Sub(t2)), append(into.rm, t4.Sub(t3))
		into.total = append(into.total, t4.Sub(t0))
	}
	if err := tn.m.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		n := 0
		for range runs {
			// Interleaved, so that the three see the same machine.
			cycle(n, false, nil, &base)
			cycle(n+1, true, nil, &plain)
			cycle(n+2, true, []PortMapping{{HostPort: 32000 + int32(n%500), ContainerPort: 80, Protocol: "tcp"}}, &ported)
			n += 3
		}
	}
	if left := reservationsB(tn); len(left) != 0 {
		b.Errorf("addresses left reserved: %v", left)
	}
	if br, err := netlink.LinkByName(tn.bridge); err == nil {
		links, _ := netlink.LinkList()
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				b.Errorf("veth %s left on the bridge", l.Attrs().Name)
			}
		}
	}

	med := func(d []time.Duration) string {
		if len(d) == 0 {
			return "-"
		}
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2].Round(10 * time.Microsecond).String()
	}
	fmt.Printf("\nPod network set-up and tear-down (default conflist: bridge + host-local + portmap + loopback; Debian plugins; median of %d):\n", len(plain.total))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pod\tnetns create\tCNI ADD\tCNI DEL\tnetns remove\ttotal\tADD+DEL\t")
	for _, r := range []struct {
		name string
		t    times
	}{{"netns only (baseline)", base}, {"no hostPort", plain}, {"one hostPort", ported}} {
		var addDel []time.Duration
		for i := range r.t.add {
			addDel = append(addDel, r.t.add[i]+r.t.del[i])
		}
		add, del := med(r.t.add), med(r.t.del)
		if r.name == "netns only (baseline)" {
			add, del, addDel = "-", "-", nil
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, med(r.t.mk), add, del, med(r.t.rm), med(r.t.total), med(addDel))
	}
	tw.Flush()
}

func reservationsB(tn *testNetwork) []string {
	ents, _ := os.ReadDir(filepath.Join(tn.m.NetworksDir(), tn.name))
	var out []string
	for _, e := range ents {
		if e.Name() != "lock" && !slices.Contains([]string{"last_reserved_ip.0", "last_reserved_ip.1"}, e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// mkNetNS makes a network namespace bind-mounted at p with loopback up, as
// the agent does (kubelet/podnet).
func mkNetNS(p string) error {
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine, in the new namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), p, "", unix.MS_BIND, ""); err != nil {
			errc <- err
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		errc <- err
	}()
	return <-errc
}

func rmNetNS(p string) error {
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
		return err
	}
	return os.Remove(p)
}
