package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// NodeAddress is a non-loopback address of this host that one node owns: a
// /32 on a dummy link of its own. A node's InternalIP must not be loopback —
// the API server refuses to proxy to one (`kubectl get --raw
// /api/v1/nodes/NODE/proxy/…` answers "address not allowed") — and pods reach
// the node on it, as on a real host. The link is a bridge without ports: a
// dummy link would do, but not every kernel has the dummy driver (ours here
// lacks it), while every host that runs pods has bridges. Close removes the
// link and its address.
type NodeAddress struct {
	// IP is the address; Link is the link that holds it.
	IP   net.IP
	Link string
}

// NodeAddress makes a NodeAddress, removed at Close. It fails t if it cannot.
func (e *Env) NodeAddress() *NodeAddress {
	e.t.Helper()
	a, err := newNodeAddress()
	if err != nil {
		e.t.Fatalf("harness: node address: %v", err)
	}
	e.onClose(a.remove)
	return a
}

// newNodeAddress picks a random address in 10.250.0.0/16 that no interface
// of the host holds and no route covers, and puts it on a new link.
func newNodeAddress() (*NodeAddress, error) {
	for range 20 {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		ip := net.IPv4(10, 250, b[0], 1+b[1]%254).To4()
		if used, err := addressUsed(ip); err != nil {
			return nil, err
		} else if used {
			continue
		}
		a := &NodeAddress{IP: ip, Link: "fnode" + hex.EncodeToString(b)}
		if err := a.add(); err != nil {
			return nil, err
		}
		return a, nil
	}
	return nil, fmt.Errorf("no free address in 10.250.0.0/16")
}

// addressUsed reports whether a host address or route holds ip.
func addressUsed(ip net.IP) (bool, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return true, nil
		}
	}
	return subnetUsed(&net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)})
}

func (a *NodeAddress) add() error {
	link := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: a.Link}}
	if err := netlink.LinkAdd(link); err != nil {
		return fmt.Errorf("add link %s: %w", a.Link, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.IP, Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		_ = netlink.LinkDel(link)
		return fmt.Errorf("add %s to %s: %w", a.IP, a.Link, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		_ = netlink.LinkDel(link)
		return fmt.Errorf("set %s up: %w", a.Link, err)
	}
	return nil
}

func (a *NodeAddress) remove() error {
	l, err := netlink.LinkByName(a.Link)
	if err != nil {
		if _, ok := err.(netlink.LinkNotFoundError); ok {
			return nil
		}
		return fmt.Errorf("remove %s: %w", a.Link, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove %s: %w", a.Link, err)
	}
	return nil
}
