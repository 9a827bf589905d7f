package cni

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// isNetNS reports whether p is a mounted network namespace.
func isNetNS(p string) bool {
	var st unix.Statfs_t
	return unix.Statfs(p, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// hasAddrs returns nil when the namespace at nsPath has interface ifName up
// with every address of ips, else what is missing.
func hasAddrs(nsPath, ifName string, ips []net.IP) error {
	h, err := netlinkHandle(nsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifName, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("interface %s is down", ifName)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		found := false
		for _, a := range addrs {
			found = found || a.IP.Equal(ip)
		}
		if !found {
			return fmt.Errorf("interface %s lacks address %s", ifName, ip)
		}
	}
	return nil
}

func netlinkHandle(nsPath string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}
