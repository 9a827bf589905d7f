package netns

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Discover finds the namespace's configured interface: the first interface
// (by link index) that is not loopback, is administratively up and has an
// IPv4 address, with its first IPv4 address and the gateway of its IPv4
// default route (the one with the lowest metric). ok is false, with a nil
// error, when there is no such interface; the VM then runs with loopback only.
// It changes nothing.
func Discover(nsPath string) (cfg Config, ok bool, err error) {
	err = Do(nsPath, func() error {
		return withRtnl(func(c *rtnl) error {
			links, err := retryDump(c.links)
			if err != nil {
				return fmt.Errorf("list links: %w", err)
			}
			slices.SortFunc(links, func(a, b link) int { return a.Index - b.Index })
			for _, l := range links {
				if l.Flags&unix.IFF_LOOPBACK != 0 || l.Flags&unix.IFF_UP == 0 {
					continue
				}
				addrs, err := retryDump(func() ([]addr, error) { return c.addrs4(l.Index) })
				if err != nil {
					return fmt.Errorf("list addresses of %s: %w", l.Name, err)
				}
				if len(addrs) == 0 {
					continue
				}
				routes, err := retryDump(c.routes4)
				if err != nil {
					return fmt.Errorf("list routes of %s: %w", l.Name, err)
				}
				cfg = Config{
					Interface: l.Name,
					MAC:       l.MAC,
					MTU:       l.MTU,
					Addr:      &net.IPNet{IP: addrs[0].IP.To4(), Mask: addrs[0].Mask},
					Gateway:   defaultGateway(routes, l.Index),
				}
				ok = true
				return nil
			}
			return nil
		})
	})
	if err != nil {
		return Config{}, false, fmt.Errorf("discover network in %s: %w", nsPath, err)
	}
	return cfg, ok, nil
}

// defaultGateway returns the gateway through link index of the IPv4
// default route with the lowest metric among routes, or nil.
func defaultGateway(routes []route, index int) net.IP {
	var gw net.IP
	best := -1
	for _, r := range routes {
		if r.DstLen != 0 {
			continue
		}
		var g net.IP
		switch {
		case r.OIF == index:
			g = r.Gw
		case r.OIF == 0:
			for _, nh := range r.Hops {
				if nh.Index == index && nh.Gw != nil {
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
	return gw
}

// retryDump retries a netlink dump that the kernel interrupted because the
// table changed meanwhile.
func retryDump[T any](list func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var v []T
		if v, err = list(); !errors.Is(err, errDumpInterrupted) {
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
	err := Do(nsPath, func() error {
		return withRtnl(func(c *rtnl) (retErr error) {
			iface, err := c.linkByName(cfg.Interface)
			if err != nil {
				return fmt.Errorf("interface %s: %w", cfg.Interface, err)
			}
			if _, err := c.linkByName(tap); err == nil {
				return fmt.Errorf("tap %s exists (Unwire it first): %w", tap, errdefs.ErrAlreadyExists)
			} else if !errors.Is(err, errLinkNotFound) {
				return fmt.Errorf("look up tap %s: %w", tap, err)
			}
			mtu := cfg.MTU
			if mtu == 0 {
				mtu = iface.MTU
			}

			var undo []func()
			defer func() {
				if retErr != nil {
					for _, u := range slices.Backward(undo) {
						u()
					}
				}
			}()

			if err := createTap(tap); err != nil {
				return fmt.Errorf("create tap %s: %w", tap, err)
			}
			t, err := c.linkByName(tap)
			if err != nil {
				_ = deleteTapByName(c, tap)
				return fmt.Errorf("look up tap %s: %w", tap, err)
			}
			undo = append(undo, func() { _ = c.deleteLink(t.Index) })
			if err := c.setMTU(t.Index, mtu); err != nil {
				return fmt.Errorf("set mtu %d on %s: %w", mtu, tap, err)
			}
			if err := c.setUp(t.Index); err != nil {
				return fmt.Errorf("bring up %s: %w", tap, err)
			}

			if err := addIngress(c, iface); err != nil {
				return err
			}
			undo = append(undo, func() {
				_ = c.deleteQdisc(qdisc{Index: iface.Index, Handle: ingressHandle, Parent: tcHIngress})
			})
			// The tap's qdisc and filter go away with the tap.
			if err := addIngress(c, t); err != nil {
				return err
			}
			if err := addRedirect(c, iface, t); err != nil {
				return err
			}
			return addRedirect(c, t, iface)
		})
	})
	if err != nil {
		return fmt.Errorf("wire %s to %s in %s: %w", tap, cfg.Interface, nsPath, err)
	}
	return nil
}

func addIngress(c *rtnl, l link) error {
	if err := c.addIngressQdisc(l.Index); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("ingress qdisc on %s already exists: %w", l.Name, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("add ingress qdisc to %s: %w", l.Name, err)
	}
	return nil
}

// addRedirect adds to from's ingress qdisc a u32 match-all filter that
// redirects every frame to to's egress.
func addRedirect(c *rtnl, from, to link) error {
	if err := c.addRedirectFilter(from.Index, to.Index); err != nil {
		return fmt.Errorf("add redirect filter %s -> %s: %w", from.Name, to.Name, err)
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
		return withRtnl(func(c *rtnl) error {
			var errs []error
			if tap != "" {
				if err := deleteTapByName(c, tap); err != nil {
					errs = append(errs, err)
				}
			}
			if iface != "" {
				if err := deleteIngress(c, iface); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		})
	})
	if err != nil {
		if errdefs.IsNotFound(err) { // the namespace is gone, and everything in it
			return nil
		}
		return fmt.Errorf("unwire %s from %s in %s: %w", tap, iface, nsPath, err)
	}
	return nil
}

// deleteTapByName deletes the tun/tap device called name, if there is one.
func deleteTapByName(c *rtnl, name string) error {
	l, err := c.linkByName(name)
	if err != nil {
		if errors.Is(err, errLinkNotFound) {
			return nil
		}
		return fmt.Errorf("look up tap %s: %w", name, err)
	}
	if l.Kind != "tun" {
		kind := l.Kind
		if kind == "" {
			kind = "device"
		}
		return fmt.Errorf("%s is a %s link, not a tap; not deleting it: %w", name, kind, errdefs.ErrFailedPrecondition)
	}
	if err := c.deleteLink(l.Index); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}

func deleteIngress(c *rtnl, iface string) error {
	l, err := c.linkByName(iface)
	if err != nil {
		if errors.Is(err, errLinkNotFound) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", iface, err)
	}
	qdiscs, err := retryDump(func() ([]qdisc, error) { return c.qdiscs(l.Index) })
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", iface, err)
	}
	for _, q := range qdiscs {
		if q.Kind != "ingress" { // not clsact, which shares the parent handle
			continue
		}
		if err := c.deleteQdisc(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete ingress qdisc of %s: %w", iface, err)
		}
	}
	return nil
}

// validName checks that name can be a network interface name.
func validName(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("invalid interface name %q: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}
