package netns

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ingressHandle is the handle of an ingress qdisc ("ffff:").
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// Discover finds the namespace's configured interface: the first interface
// (by link index) that is not loopback, is administratively up and has an
// IPv4 address, with its first IPv4 address and the gateway of its IPv4
// default route (the one with the lowest metric). ok is false, with a nil
// error, when there is no such interface; the VM then runs with loopback only.
// It changes nothing.
func Discover(nsPath string) (cfg Config, ok bool, err error) {
	err = Do(nsPath, func() error {
		links, err := retryDump(netlink.LinkList)
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		slices.SortFunc(links, func(a, b netlink.Link) int { return a.Attrs().Index - b.Attrs().Index })
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
				continue
			}
			addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V4) })
			if err != nil {
				return fmt.Errorf("list addresses of %s: %w", a.Name, err)
			}
			if len(addrs) == 0 {
				continue
			}
			gw, err := defaultGateway(l)
			if err != nil {
				return err
			}
			cfg = Config{
				Interface: a.Name,
				MAC:       slices.Clone(a.HardwareAddr),
				MTU:       a.MTU,
				Addr:      &net.IPNet{IP: addrs[0].IP.To4(), Mask: slices.Clone(addrs[0].Mask)},
				Gateway:   gw,
			}
			ok = true
			return nil
		}
		return nil
	})
	if err != nil {
		return Config{}, false, fmt.Errorf("discover network in %s: %w", nsPath, err)
	}
	return cfg, ok, nil
}

// defaultGateway returns the gateway of l's IPv4 default route with the lowest
// metric, or nil.
func defaultGateway(l netlink.Link) (net.IP, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(l, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", l.Attrs().Name, err)
	}
	var gw net.IP
	best := -1
	for _, r := range routes {
		if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) {
			continue
		}
		g := r.Gw
		if g == nil {
			for _, nh := range r.MultiPath {
				if nh.LinkIndex == l.Attrs().Index && nh.Gw != nil {
					g = nh.Gw
					break
				}
			}
		}
		if g == nil || g.To4() == nil {
			continue
		}
		if best < 0 || r.Priority < best {
			gw, best = slices.Clone(g.To4()), r.Priority
		}
	}
	return gw, nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// retryDump retries a netlink dump that the kernel interrupted because the
// table changed meanwhile.
func retryDump[T any](list func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var v []T
		if v, err = list(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return nil, err
}

// Wire connects a new tap device named tap to the interface cfg.Interface in
// the namespace at nsPath, as Kata's tcfilter mode does: it creates the tap
// (persistent; IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, single queue), sets its MTU to
// cfg.MTU (the interface's MTU when 0) and brings it up, adds an ingress qdisc
// to the interface and to the tap, and on each a u32 match-all filter (all
// protocols) whose action is a mirred egress redirect to the other. Every
// frame that arrives on the interface leaves through the tap to the VM and
// vice versa; the VM's NIC must use cfg.MAC, so the rest of the network sees
// no change. Only cfg.Interface and cfg.MTU are used.
//
// QEMU then opens the tap by name (-netdev tap,ifname=TAP,script=no,
// downscript=no) from inside the namespace. Wire is not idempotent: an
// existing tap, or an existing ingress qdisc on the interface, is an error
// (errdefs.ErrAlreadyExists; Unwire first). On any error it undoes what it did.
func Wire(nsPath string, cfg Config, tap string) error {
	if err := validName(tap); err != nil {
		return fmt.Errorf("wire tap: %w", err)
	}
	if cfg.Interface == "" || cfg.Interface == tap {
		return fmt.Errorf("wire tap %s: invalid interface %q: %w", tap, cfg.Interface, errdefs.ErrInvalidArgument)
	}
	err := Do(nsPath, func() (retErr error) {
		link, err := netlink.LinkByName(cfg.Interface)
		if err != nil {
			return fmt.Errorf("interface %s: %w", cfg.Interface, err)
		}
		if _, err := netlink.LinkByName(tap); err == nil {
			return fmt.Errorf("tap %s exists (Unwire it first): %w", tap, errdefs.ErrAlreadyExists)
		} else if !isLinkNotFound(err) {
			return fmt.Errorf("look up tap %s: %w", tap, err)
		}
		mtu := cfg.MTU
		if mtu == 0 {
			mtu = link.Attrs().MTU
		}

		var undo []func()
		defer func() {
			if retErr != nil {
				for _, u := range slices.Backward(undo) {
					u()
				}
			}
		}()

		t := &netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: tap},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
		}
		if err := netlink.LinkAdd(t); err != nil {
			return fmt.Errorf("create tap %s: %w", tap, err)
		}
		undo = append(undo, func() { netlink.LinkDel(t) })
		tapLink, err := netlink.LinkByName(tap)
		if err != nil {
			return fmt.Errorf("look up tap %s: %w", tap, err)
		}
		if err := netlink.LinkSetMTU(tapLink, mtu); err != nil {
			return fmt.Errorf("set mtu %d on %s: %w", mtu, tap, err)
		}
		if err := netlink.LinkSetUp(tapLink); err != nil {
			return fmt.Errorf("bring up %s: %w", tap, err)
		}

		if err := addIngress(link); err != nil {
			return err
		}
		undo = append(undo, func() { netlink.QdiscDel(ingressQdisc(link)) })
		// The tap's qdisc and filter go away with the tap.
		if err := addIngress(tapLink); err != nil {
			return err
		}
		if err := addRedirect(link, tapLink); err != nil {
			return err
		}
		return addRedirect(tapLink, link)
	})
	if err != nil {
		return fmt.Errorf("wire %s to %s in %s: %w", tap, cfg.Interface, nsPath, err)
	}
	return nil
}

func ingressQdisc(l netlink.Link) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    ingressHandle,
		Parent:    netlink.HANDLE_INGRESS,
	}}
}

func addIngress(l netlink.Link) error {
	if err := netlink.QdiscAdd(ingressQdisc(l)); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("ingress qdisc on %s already exists: %w", l.Attrs().Name, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("add ingress qdisc to %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// addRedirect adds to from's ingress qdisc a u32 match-all filter that
// redirects every frame to to's egress.
func addRedirect(from, to netlink.Link) error {
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    ingressHandle,
			Protocol:  unix.ETH_P_ALL,
		},
		Sel: &netlink.TcU32Sel{
			Keys:  []netlink.TcU32Key{{}}, // mask 0: matches everything
			Flags: netlink.TC_U32_TERMINAL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("add redirect filter %s -> %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// Unwire undoes Wire: it deletes the tap device named tap (with its qdisc and
// filter) and the ingress qdisc of the interface iface (with its filter). It
// is idempotent and meant for cleanup, also after a crash: a missing
// namespace, tap, interface or qdisc is not an error. An empty tap or iface
// skips that part. A link named tap that is not a tun/tap device is left alone
// and reported (errdefs.ErrFailedPrecondition).
func Unwire(nsPath string, iface, tap string) error {
	err := Do(nsPath, func() error {
		var errs []error
		if tap != "" {
			if err := deleteTap(tap); err != nil {
				errs = append(errs, err)
			}
		}
		if iface != "" {
			if err := deleteIngress(iface); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		if errdefs.IsNotFound(err) { // the namespace is gone, and everything in it
			return nil
		}
		return fmt.Errorf("unwire %s from %s in %s: %w", tap, iface, nsPath, err)
	}
	return nil
}

func deleteTap(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		if isLinkNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up tap %s: %w", name, err)
	}
	if l.Type() != "tuntap" {
		return fmt.Errorf("%s is a %s link, not a tap; not deleting it: %w", name, l.Type(), errdefs.ErrFailedPrecondition)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}

func deleteIngress(iface string) error {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		if isLinkNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", iface, err)
	}
	qdiscs, err := retryDump(func() ([]netlink.Qdisc, error) { return netlink.QdiscList(l) })
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", iface, err)
	}
	for _, q := range qdiscs {
		if q.Type() != "ingress" { // not clsact, which shares the parent handle
			continue
		}
		if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete ingress qdisc of %s: %w", iface, err)
		}
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// validName checks that name can be a network interface name.
func validName(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("invalid interface name %q: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}
