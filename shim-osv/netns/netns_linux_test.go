package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/feather-edge/feather/internal/prereq"
)

func requiresRoot(t *testing.T) {
	t.Helper()
	prereq.Check(t, os.Geteuid() == 0, "test requires root (network namespaces, netlink)")
}

// newNS creates a fresh network namespace bind-mounted on a file in a temp
// dir and returns its path. Cleanup unmounts it, which destroys the namespace
// and every link in it.
func newNS(t *testing.T) string {
	t.Helper()
	requiresRoot(t)
	path := filepath.Join(t.TempDir(), "netns")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		origin, err := os.Open(self)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer origin.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		err = unix.Mount(self, path, "", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind mount netns: %w", err)
		}
		if rerr := unix.Setns(int(origin.Fd()), unix.CLONE_NEWNET); rerr != nil {
			// Stay locked: the thread exits with this goroutine.
			errc <- errors.Join(err, rerr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		if errors.Is(err, unix.EPERM) {
			prereq.Check(t, false, fmt.Sprintf("cannot create network namespaces: %v", err))
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount netns %s: %v", path, err)
		}
	})
	return path
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// threadNS returns the inode of the calling thread's network namespace.
func threadNS() (uint64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var st syscall.Stat_t
	err := syscall.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st)
	return st.Ino, err
}

func TestDo(t *testing.T) {
	ns := newNS(t)
	want := nsInode(t, ns)
	// Not /proc/self/ns/net: that is the main thread's, and a goroutine
	// that exits locked may leave the main thread wedged in another netns.
	host, err := threadNS()
	if err != nil {
		t.Fatal(err)
	}
	notNS := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(notNS, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")

	for _, tc := range []struct {
		name    string
		path    string
		fn      func() error
		wantErr error
	}{
		{
			name: "thread in namespace",
			path: ns,
			fn: func() error {
				if got, err := threadNS(); err != nil || got != want {
					return fmt.Errorf("thread netns inode %d (%v), want %d", got, err, want)
				}
				return nil
			},
		},
		{
			name: "child process inherits namespace",
			path: ns,
			fn: func() error {
				out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
				if err != nil {
					return err
				}
				if got, w := strings.TrimSpace(string(out)), fmt.Sprintf("net:[%d]", want); got != w {
					return fmt.Errorf("child netns %s, want %s", got, w)
				}
				return nil
			},
		},
		{
			name: "empty path runs in current namespace",
			path: "",
			fn: func() error {
				if got, err := threadNS(); err != nil || got != host {
					return fmt.Errorf("netns inode %d (%v), want host %d", got, err, host)
				}
				return nil
			},
		},
		{name: "fn error", path: ns, fn: func() error { return boom }, wantErr: boom},
		{name: "missing path", path: filepath.Join(t.TempDir(), "gone"), fn: func() error { return nil }, wantErr: errdefs.ErrNotFound},
		{name: "not a namespace", path: notNS, fn: func() error { return nil }, wantErr: errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			err := Do(tc.path, func() error { ran = true; return tc.fn() })
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Do: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Do = %v, want %v", err, tc.wantErr)
			}
			if !ran && !errdefs.IsNotFound(tc.wantErr) {
				t.Error("fn did not run")
			}
		})
	}

	t.Run("panic propagates", func(t *testing.T) {
		defer func() {
			if p := recover(); p != "oops" {
				t.Errorf("recovered %v, want oops", p)
			}
		}()
		Do(ns, func() error { panic("oops") })
	})
}

// podNS builds a namespace like a CNI plugin leaves it: eth0 (one end of a
// veth pair whose other end is in a second namespace) up with addr/24, MTU
// 1400 and a default route via gw, plus decoys that Discover must skip: a
// down interface with an address and an up one without, both with lower
// indexes, and an up, addressed one with a higher index.
func podNS(t *testing.T, addr, gw string) string {
	t.Helper()
	pod, peer := newNS(t), newNS(t)
	ip, ipnet, err := net.ParseCIDR(addr)
	if err != nil {
		t.Fatal(err)
	}
	ipnet.IP = ip
	podFD, err := os.Open(pod)
	if err != nil {
		t.Fatal(err)
	}
	defer podFD.Close()

	err = Do(pod, func() error {
		// Decoys with lower indexes.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "down0"}, PeerName: "noaddr0"}); err != nil {
			return err
		}
		if err := addAddr("down0", "10.213.9.2/24"); err != nil {
			return err
		}
		return setUp("noaddr0")
	})
	if err != nil {
		t.Fatalf("decoys: %v", err)
	}
	err = Do(peer, func() error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: "host0", MTU: 1400},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(podFD.Fd()),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		return setUp("host0")
	})
	if err != nil {
		t.Fatalf("veth: %v", err)
	}
	err = Do(pod, func() error {
		if err := setUp("eth0"); err != nil {
			return err
		}
		if err := addAddr("eth0", addr); err != nil {
			return err
		}
		if gw != "" {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
				return fmt.Errorf("default route: %w", err)
			}
		}
		// A decoy with a higher index.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "later0"}, PeerName: "later1"}); err != nil {
			return err
		}
		if err := setUp("later0"); err != nil {
			return err
		}
		return addAddr("later0", "10.213.10.2/24")
	})
	if err != nil {
		t.Fatalf("configure eth0: %v", err)
	}
	return pod
}

func setUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func addAddr(name, cidr string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	return netlink.AddrAdd(l, a)
}

func TestDiscover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gw     string
		wantGw net.IP
	}{
		{name: "with gateway", gw: "10.213.7.1", wantGw: net.IPv4(10, 213, 7, 1).To4()},
		{name: "without gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := podNS(t, "10.213.7.2/24", tc.gw)
			var wantMAC net.HardwareAddr
			if err := Do(ns, func() error {
				l, err := netlink.LinkByName("eth0")
				if err == nil {
					wantMAC = l.Attrs().HardwareAddr
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}

			cfg, ok, err := Discover(ns)
			if err != nil || !ok {
				t.Fatalf("Discover = %+v, %v, %v", cfg, ok, err)
			}
			if cfg.Interface != "eth0" {
				t.Errorf("Interface = %q, want eth0", cfg.Interface)
			}
			if cfg.MAC.String() != wantMAC.String() || len(cfg.MAC) != 6 {
				t.Errorf("MAC = %v, want %v", cfg.MAC, wantMAC)
			}
			if cfg.MTU != 1400 {
				t.Errorf("MTU = %d, want 1400", cfg.MTU)
			}
			if cfg.Addr == nil || cfg.Addr.String() != "10.213.7.2/24" || len(cfg.Addr.IP) != net.IPv4len {
				t.Errorf("Addr = %v, want 10.213.7.2/24 (4-byte IP)", cfg.Addr)
			}
			if !cfg.Gateway.Equal(tc.wantGw) || (tc.wantGw == nil) != (cfg.Gateway == nil) {
				t.Errorf("Gateway = %v, want %v", cfg.Gateway, tc.wantGw)
			}
		})
	}

	t.Run("empty namespace", func(t *testing.T) {
		cfg, ok, err := Discover(newNS(t))
		if err != nil || ok {
			t.Fatalf("Discover = %+v, %v, %v; want ok=false, nil", cfg, ok, err)
		}
	})
}

// wiring is what Wire leaves in a namespace.
type wiring struct {
	tapExists     bool
	tap           *netlink.Tuntap
	ifaceIngress  bool
	tapIngress    bool
	ifaceRedirect int // ifindex that eth0's filter redirects to, 0 if none
	tapRedirect   int
	ifaceIndex    int
}

func inspect(t *testing.T, ns, iface, tap string) wiring {
	t.Helper()
	var w wiring
	err := Do(ns, func() error {
		il, err := netlink.LinkByName(iface)
		if err != nil {
			return err
		}
		w.ifaceIndex = il.Attrs().Index
		if w.ifaceIngress, w.ifaceRedirect, err = ingressOf(il); err != nil {
			return err
		}
		tl, err := netlink.LinkByName(tap)
		if isLinkNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		w.tapExists = true
		w.tap, _ = tl.(*netlink.Tuntap)
		w.tapIngress, w.tapRedirect, err = ingressOf(tl)
		return err
	})
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	return w
}

func ingressOf(l netlink.Link) (hasQdisc bool, redirectTo int, err error) {
	qdiscs, err := netlink.QdiscList(l)
	if err != nil {
		return false, 0, err
	}
	for _, q := range qdiscs {
		if q.Type() == "ingress" {
			hasQdisc = true
		}
	}
	if !hasQdisc {
		return false, 0, nil
	}
	filters, err := netlink.FilterList(l, ingressHandle)
	if err != nil {
		return false, 0, err
	}
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok || f.Attrs().Protocol != unix.ETH_P_ALL {
			continue
		}
		for _, a := range u.Actions {
			if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR {
				if redirectTo != 0 {
					return false, 0, fmt.Errorf("%s: more than one redirect", l.Attrs().Name)
				}
				redirectTo = m.Ifindex
			}
		}
	}
	return hasQdisc, redirectTo, nil
}

func TestWireUnwire(t *testing.T) {
	ns := podNS(t, "10.213.7.2/24", "10.213.7.1")
	cfg, ok, err := Discover(ns)
	if err != nil || !ok {
		t.Fatalf("Discover = %v, %v", ok, err)
	}
	tap := TapName(t.Name())
	t.Cleanup(func() { Unwire(ns, cfg.Interface, tap) })

	if err := Wire(ns, cfg, tap); err != nil {
		t.Fatalf("Wire: %v", err)
	}
	w := inspect(t, ns, cfg.Interface, tap)
	if !w.tapExists || w.tap == nil {
		t.Fatalf("tap %s missing or not a tuntap after Wire", tap)
	}
	if w.tap.Mode != netlink.TUNTAP_MODE_TAP {
		t.Errorf("tap mode = %v, want tap", w.tap.Mode)
	}
	if want := netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR; w.tap.Flags&want != want || w.tap.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
		t.Errorf("tap flags = %#x, want NO_PI|VNET_HDR, single queue", w.tap.Flags)
	}
	if w.tap.NonPersist {
		t.Error("tap is not persistent")
	}
	if w.tap.MTU != 1400 || w.tap.Attrs().RawFlags&unix.IFF_UP == 0 {
		t.Errorf("tap mtu = %d up = %v, want 1400, up", w.tap.MTU, w.tap.Attrs().RawFlags&unix.IFF_UP != 0)
	}
	if !w.ifaceIngress || !w.tapIngress {
		t.Errorf("ingress qdiscs: %s %v, tap %v; want both", cfg.Interface, w.ifaceIngress, w.tapIngress)
	}
	if w.ifaceRedirect != w.tap.Index {
		t.Errorf("%s redirects to ifindex %d, want tap %d", cfg.Interface, w.ifaceRedirect, w.tap.Index)
	}
	if w.tapRedirect != w.ifaceIndex {
		t.Errorf("tap redirects to ifindex %d, want %s %d", w.tapRedirect, cfg.Interface, w.ifaceIndex)
	}

	if err := Wire(ns, cfg, tap); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Wire = %v, want already exists", err)
	}

	for i := range 2 {
		if err := Unwire(ns, cfg.Interface, tap); err != nil {
			t.Fatalf("Unwire #%d: %v", i+1, err)
		}
		w := inspect(t, ns, cfg.Interface, tap)
		if w.tapExists || w.ifaceIngress {
			t.Errorf("after Unwire #%d: tap exists %v, %s ingress %v", i+1, w.tapExists, cfg.Interface, w.ifaceIngress)
		}
	}
}

// TestWireUndo makes Wire fail after it created the tap (the interface
// already has an ingress qdisc) and checks it removed the tap again and left
// the existing qdisc alone.
func TestWireUndo(t *testing.T) {
	ns := podNS(t, "10.213.7.2/24", "10.213.7.1")
	cfg, _, err := Discover(ns)
	if err != nil {
		t.Fatal(err)
	}
	err = Do(ns, func() error {
		l, err := netlink.LinkByName(cfg.Interface)
		if err != nil {
			return err
		}
		return netlink.QdiscAdd(ingressQdisc(l))
	})
	if err != nil {
		t.Fatal(err)
	}
	tap := TapName(t.Name())
	t.Cleanup(func() { Unwire(ns, cfg.Interface, tap) })
	if err := Wire(ns, cfg, tap); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Wire = %v, want already exists", err)
	}
	w := inspect(t, ns, cfg.Interface, tap)
	if w.tapExists {
		t.Error("tap left behind after failed Wire")
	}
	if !w.ifaceIngress {
		t.Error("failed Wire removed the pre-existing ingress qdisc")
	}
}

func TestUnwireGone(t *testing.T) {
	requiresRoot(t)
	unmounted := filepath.Join(t.TempDir(), "unmounted")
	if err := os.WriteFile(unmounted, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ns   string
	}{
		{name: "missing namespace", ns: filepath.Join(t.TempDir(), "gone")},
		{name: "unmounted namespace", ns: unmounted},
		{name: "empty namespace", ns: newNS(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Unwire(tc.ns, "eth0", TapName("x")); err != nil {
				t.Errorf("Unwire = %v, want nil", err)
			}
		})
	}
}

func TestWireInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		iface string
		tap   string
	}{
		{name: "empty tap", iface: "eth0", tap: ""},
		{name: "long tap", iface: "eth0", tap: "tap0123456789abc"},
		{name: "slash", iface: "eth0", tap: "tap/1"},
		{name: "empty interface", iface: "", tap: "tap1"},
		{name: "same name", iface: "tap1", tap: "tap1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Validation happens before the namespace is touched.
			err := Wire("/nonexistent", Config{Interface: tc.iface}, tc.tap)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("Wire = %v, want invalid argument", err)
			}
		})
	}
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// ingressQdisc is l's ingress qdisc, built by the netlink library: the tests
// check the package's hand-written messages against it.
func ingressQdisc(l netlink.Link) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
}
