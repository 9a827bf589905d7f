package guestinit

import (
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
)

// resolvConf is where --nameserver goes.
var resolvConf = "/etc/resolv.conf"

// setupNetwork brings lo up and applies --ip, --defaultgw and --nameserver.
func setupNetwork(cfg *Config) error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if n := cfg.Net; n != nil {
		var link netlink.Link
		err := retry(func() (err error) {
			link, err = netlink.LinkByName(n.Iface)
			return err
		})
		if err != nil {
			return fmt.Errorf("--ip: interface %s: %w (does QEMU have a virtio-net-pci device?)", n.Iface, err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   n.Prefix.Addr().AsSlice(),
			Mask: net.CIDRMask(n.Prefix.Bits(), 32),
		}}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("--ip: add %s to %s: %w", n.Prefix, n.Iface, err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("--ip: bring up %s: %w", n.Iface, err)
		}
		if cfg.Gateway.IsValid() {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: cfg.Gateway.AsSlice()}
			if err := netlink.RouteAdd(r); err != nil {
				return fmt.Errorf("--defaultgw=%s: %w", cfg.Gateway, err)
			}
		}
	}
	if cfg.Nameserver.IsValid() {
		if err := os.WriteFile(resolvConf, []byte("nameserver "+cfg.Nameserver.String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("--nameserver: %w", err)
		}
	}
	return nil
}
