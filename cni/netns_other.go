//go:build !linux

package cni

import (
	"errors"
	"net"
	"os"
)

// isNetNS reports whether p exists; only Linux has network namespaces.
func isNetNS(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// hasAddrs cannot look into a namespace but on Linux.
func hasAddrs(string, string, []net.IP) error { return errors.New("network namespaces need Linux") }
