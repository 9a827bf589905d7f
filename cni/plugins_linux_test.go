package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/feather-edge/feather/internal/prereq"
)

// requiresPlugins skips t unless it runs as root with Debian's CNI plugins
// and iptables.
func requiresPlugins(t testing.TB) {
	t.Helper()
	prereq.Root(t)
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		_, err := os.Stat(filepath.Join(DefaultBinDir, p))
		prereq.Check(t, err == nil, fmt.Sprintf("CNI plugin %s not found in %s: run `make deps` (containernetworking-plugins)", p, DefaultBinDir))
	}
	prereq.Program(t, "iptables", "run `make deps`")
}

// testNetwork is a private default network: its own conf, state, bridge and
// subnet, removed (bridge included) when t ends.
type testNetwork struct {
	m      *Manager
	name   string
	bridge string
	subnet *net.IPNet
	dir    string
}

func newTestNetwork(t testing.TB) *testNetwork {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	dir := t.TempDir()
	tn := &testNetwork{name: "fcni-" + suffix, bridge: "fcni" + suffix, dir: dir}
	_, tn.subnet, _ = net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, b[1]))
	tn.m = New(Config{ConfDir: filepath.Join(dir, "net.d"), StateDir: filepath.Join(dir, "state")})
	n := DefaultNetwork{Name: tn.name, Bridge: tn.bridge, Subnets: []string{tn.subnet.String()}, DataDir: tn.m.NetworksDir()}
	if _, err := InstallDefault(filepath.Join(dir, "net.d"), n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(tn.bridge); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	return tn
}

// newNetNS makes a network namespace bind-mounted at a file of t's, with
// loopback up, removed when t ends.
func newNetNS(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "netns")
	if err := mkNetNS(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
	return p
}

// inNS runs fn on a thread that joined the namespace at p.
func inNS(p string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(p)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn() // the thread is not unlocked: it dies in the namespace
	}()
	return <-errc
}

// natRules returns the iptables nat rules that mention the network name.
func natRules(t testing.TB, name string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, name) {
			rules = append(rules, l)
		}
	}
	return rules
}

func reservations(t testing.TB, tn *testNetwork) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(tn.m.NetworksDir(), tn.name))
	var ips []string
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// TestPlugins attaches two pods to a private default network with Debian's
// plugins: distinct addresses in the subnet, TCP between them, a hostPort
// through portmap from the host, CHECK instead of a second ADD after a
// "restart", and DEL releasing every address, veth and iptables rule.
func TestPlugins(t *testing.T) {
	requiresPlugins(t)
	tn := newTestNetwork(t)
	ctx := context.Background()
	if err := tn.m.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	a := Pod{UID: "pod-a-" + tn.name, Namespace: "default", Name: "a", NetNS: newNetNS(t)}
	b := Pod{UID: "pod-b-" + tn.name, Namespace: "default", Name: "b", NetNS: newNetNS(t),
		PortMappings: []PortMapping{{HostPort: 31000 + int32(time.Now().UnixNano()%1000), ContainerPort: 8080, Protocol: "TCP"}}}
	t.Cleanup(func() {
		_ = tn.m.Teardown(ctx, a)
		_ = tn.m.Teardown(ctx, b)
	})
	ra, err := tn.m.Setup(ctx, a)
	if err != nil {
		t.Fatalf("Setup a: %v", err)
	}
	rb, err := tn.m.Setup(ctx, b)
	if err != nil {
		t.Fatalf("Setup b: %v", err)
	}
	t.Logf("a: %v, b: %v", ra.IPs, rb.IPs)
	if len(ra.IPs) != 1 || len(rb.IPs) != 1 || ra.IPs[0].Equal(rb.IPs[0]) || !tn.subnet.Contains(ra.IPs[0]) || !tn.subnet.Contains(rb.IPs[0]) {
		t.Fatalf("IPs a=%v b=%v, want two distinct addresses in %s", ra.IPs, rb.IPs, tn.subnet)
	}
	if ra.Network != tn.name {
		t.Errorf("network = %q, want %q", ra.Network, tn.name)
	}

	// A server in b, reached from a by its pod IP and from the host by the
	// hostPort.
	var ln net.Listener
	if err := inNS(b.NetNS, func() error {
		var err error
		ln, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello from b\n")
			c.Close()
		}
	}()
	dial := func(addr string) (string, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		return string(got), err
	}
	var got string
	if err := inNS(a.NetNS, func() error {
		var err error
		got, err = dial(net.JoinHostPort(rb.IPs[0].String(), "8080"))
		return err
	}); err != nil || got != "hello from b\n" {
		t.Errorf("a → b:8080 = %q, %v", got, err)
	}
	hostPort := fmt.Sprint(b.PortMappings[0].HostPort)
	for _, host := range []string{hostIP(t), "127.0.0.1"} {
		if got, err := dial(net.JoinHostPort(host, hostPort)); err != nil || got != "hello from b\n" {
			t.Errorf("host → %s:%s (hostPort) = %q, %v", host, hostPort, got, err)
		}
	}

	// A restarted agent: a new Manager on the same state CHECKs, and the
	// pod keeps its address.
	m2 := New(Config{ConfDir: tn.m.cfg.ConfDir, StateDir: tn.m.cfg.StateDir})
	rb2, err := m2.Setup(ctx, b)
	if err != nil || len(rb2.IPs) != 1 || !rb2.IPs[0].Equal(rb.IPs[0]) {
		t.Errorf("Setup after restart = %v, %v; want %v", rb2.IPs, err, rb.IPs)
	}
	if n := len(reservations(t, tn)); n != 2 {
		t.Errorf("%d addresses reserved, want 2", n)
	}
	if rules := natRules(t, tn.name); len(rules) == 0 {
		t.Errorf("no nat rule mentions %s (ipMasq, portmap)", tn.name)
	}

	for _, p := range []Pod{a, b} {
		if err := m2.Teardown(ctx, p); err != nil {
			t.Errorf("Teardown %s: %v", p.Name, err)
		}
		if err := m2.Teardown(ctx, p); err != nil {
			t.Errorf("second Teardown %s: %v", p.Name, err)
		}
	}
	if ips := reservations(t, tn); len(ips) != 0 {
		t.Errorf("addresses still reserved: %v", ips)
	}
	if rules := natRules(t, tn.name); len(rules) != 0 {
		t.Errorf("nat rules left:\n%s", strings.Join(rules, "\n"))
	}
	br, err := netlink.LinkByName(tn.bridge)
	if err != nil {
		t.Fatal(err)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			t.Errorf("veth %s still on the bridge", l.Attrs().Name)
		}
	}
	if uids, _ := m2.Attached(); len(uids) != 0 {
		t.Errorf("records left: %v", uids)
	}
}

// TestPluginsCollect: pods attached before a "crash" and gone since are
// detached by Collect; a live one stays; a reservation without a record
// (a crash inside ADD) is released.
func TestPluginsCollect(t *testing.T) {
	requiresPlugins(t)
	tn := newTestNetwork(t)
	ctx := context.Background()
	live := Pod{UID: "live-" + tn.name, NetNS: newNetNS(t)}
	gone := Pod{UID: "gone-" + tn.name, NetNS: newNetNS(t)}
	t.Cleanup(func() { _ = tn.m.Teardown(ctx, live) })
	for _, p := range []Pod{live, gone} {
		if _, err := tn.m.Setup(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	stray := filepath.Join(tn.m.NetworksDir(), tn.name, "10.0.0.99")
	if err := os.WriteFile(stray, []byte("crashed-pod\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	m2 := New(Config{ConfDir: tn.m.cfg.ConfDir, StateDir: tn.m.cfg.StateDir})
	if err := m2.Collect(ctx, map[string]bool{live.UID: true}); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if uids, _ := m2.Attached(); len(uids) != 1 || uids[0] != live.UID {
		t.Errorf("attached after Collect = %v, want [%s]", uids, live.UID)
	}
	if ips := reservations(t, tn); len(ips) != 1 {
		t.Errorf("reservations after Collect = %v, want the live pod's only", ips)
	}
	var eth0 bool
	_ = inNS(gone.NetNS, func() error {
		_, err := netlink.LinkByName("eth0")
		eth0 = err == nil
		return nil
	})
	if eth0 {
		t.Error("the gone pod still has eth0")
	}
}

// hostIP is the address of the default route's interface.
func hostIP(t testing.TB) string {
	c, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		prereq.Check(t, false, "no default route")
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}
