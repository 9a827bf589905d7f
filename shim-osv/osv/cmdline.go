// Package osv builds OSv's command line — the options and commands its
// loader reads at boot — from what a container asks for: arguments,
// environment, working directory, mounts and network.
//
// OSv's syntax (see ../../../shared/design.md §3): leading options
// (--env=K=V, --cwd=DIR, --mount-fs=virtiofs,/dev/virtiofsN,DIR,
// --ip=IF,ADDR,MASK, --defaultgw=, --nameserver=, --verbose), then commands
// separated by ';' (in sequence) or '&' (in background), their words split at
// spaces and grouped by double quotes. Single quotes do not group, and there
// is no escape for a double quote.
package osv

import (
	"fmt"
	"net"
	"strings"

	"github.com/containerd/errdefs"
)

// Limits of the command line's length, in bytes without the final NUL.
const (
	// MaxDirect is the longest command line QEMU 7.2's PVH direct boot
	// passes intact (-append); longer ones are silently corrupted.
	MaxDirect = 3647
	// MaxDisk is the longest command line OSv reads from its boot disk at
	// byte CmdlineOffset.
	MaxDisk = 32255
	// CmdlineOffset is where, on an OSv boot disk, the NUL-terminated
	// command line starts.
	CmdlineOffset = 512
)

// Mount is a virtio-fs share as OSv sees it: the N-th virtio-fs device, in
// QEMU's -device order, mounted at Target.
type Mount struct {
	Device int
	Target string
}

// Network is the guest's static IPv4 configuration. OSv waits forever for
// DHCP without one, so a VM with a NIC always gets it.
type Network struct {
	Interface   string // the guest's name for its NIC: eth0
	Addr        *net.IPNet
	Gateway     net.IP   // nil: no default route
	Nameservers []net.IP // may be empty
}

// Cmdline is what goes into one OSv command line.
type Cmdline struct {
	Args    []string // the program and its arguments: one command
	Env     []string // K=V
	Cwd     string
	Mounts  []Mount
	Network *Network
	// Verbose makes OSv report `program X returned N` on the console,
	// which is how the shim learns the exit code.
	Verbose bool
}

// String renders c, or returns an ErrInvalidArgument error naming what OSv's
// syntax cannot carry.
func (c Cmdline) String() (string, error) {
	if len(c.Args) == 0 {
		return "", fmt.Errorf("no command to run: the image has no entrypoint or cmd and none was given: %w", errdefs.ErrInvalidArgument)
	}
	var words []string
	opt := func(name, value string) error {
		w, err := quote("--" + name + "=" + value)
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		words = append(words, w)
		return nil
	}
	if c.Verbose {
		words = append(words, "--verbose")
	}
	for _, kv := range c.Env {
		if !strings.Contains(kv, "=") || strings.HasPrefix(kv, "=") {
			return "", fmt.Errorf("environment entry %q is not KEY=VALUE: %w", kv, errdefs.ErrInvalidArgument)
		}
		if err := opt("env", kv); err != nil {
			return "", err
		}
	}
	if c.Cwd != "" && c.Cwd != "/" {
		if err := opt("cwd", c.Cwd); err != nil {
			return "", err
		}
	}
	for _, m := range c.Mounts {
		if strings.Contains(m.Target, ",") {
			return "", fmt.Errorf("mount point %q: OSv's --mount-fs cannot carry a comma: %w", m.Target, errdefs.ErrInvalidArgument)
		}
		if err := opt("mount-fs", fmt.Sprintf("virtiofs,/dev/virtiofs%d,%s", m.Device, m.Target)); err != nil {
			return "", err
		}
	}
	if n := c.Network; n != nil {
		ip4 := n.Addr.IP.To4()
		if ip4 == nil || len(n.Addr.Mask) == 0 {
			return "", fmt.Errorf("guest address %v is not IPv4 with a mask: %w", n.Addr, errdefs.ErrInvalidArgument)
		}
		words = append(words, fmt.Sprintf("--ip=%s,%s,%s", n.Interface, ip4, net.IP(n.Addr.Mask)))
		if n.Gateway != nil {
			words = append(words, "--defaultgw="+n.Gateway.String())
		}
		for _, ns := range n.Nameservers {
			words = append(words, "--nameserver="+ns.String())
		}
	}
	for _, a := range c.Args {
		w, err := quote(a)
		if err != nil {
			return "", fmt.Errorf("argument %q: %w", a, err)
		}
		words = append(words, w)
	}
	return strings.Join(words, " "), nil
}

// quote returns w as one OSv word: as it is when it needs no grouping, else
// in double quotes. OSv has no escape, so a double quote, a NUL or a line
// break cannot be passed.
func quote(w string) (string, error) {
	if strings.ContainsAny(w, "\"\x00\n\r") {
		return "", fmt.Errorf("OSv's command line cannot carry double quotes, NULs or line breaks: %w", errdefs.ErrInvalidArgument)
	}
	if w == "" || strings.ContainsAny(w, " \t;&'") {
		return `"` + w + `"`, nil
	}
	return w, nil
}

// CheckLength returns an ErrInvalidArgument error if cmdline is longer than
// max bytes, saying by how much.
func CheckLength(cmdline string, max int) error {
	if len(cmdline) > max {
		return fmt.Errorf("OSv command line is %d bytes, over the limit of %d for this boot mode: shorten the arguments or environment: %w",
			len(cmdline), max, errdefs.ErrInvalidArgument)
	}
	return nil
}
