package guestinit

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/feather-edge/feather/osv"
)

// Config is a parsed OSv command line: the loader options that lead it and
// the commands after them.
type Config struct {
	// Env holds the --env=K=V options, in order.
	Env []string `json:",omitzero"`
	// Cwd is --cwd=DIR, "" when absent.
	Cwd string `json:",omitzero"`
	// Mounts holds the --mount-fs options, in order.
	Mounts []Mount `json:",omitzero"`
	// Net is --ip=IFACE,ADDR,NETMASK; nil when absent.
	Net *NetConfig `json:",omitzero"`
	// Gateway is --defaultgw=ADDR; invalid when absent.
	Gateway netip.Addr `json:",omitzero"`
	// Nameserver is --nameserver=ADDR; invalid when absent.
	Nameserver netip.Addr `json:",omitzero"`
	// Rootfs is --rootfs=…, accepted and ignored (the guest's root is its
	// initramfs).
	Rootfs string `json:",omitzero"`
	// Verbose is --verbose.
	Verbose bool `json:",omitzero"`
	// Ignored holds options OSv knows but this guest does not act on.
	Ignored []string `json:",omitzero"`
	// Commands are the programs to run, in order.
	Commands []Command `json:",omitzero"`
}

// Mount is one --mount-fs=TYPE,DEVICE,DIR option.
type Mount struct {
	Type, Device, Dir string
}

// Tag is the virtio-fs tag the guest mounts for m: the device's base name
// (/dev/virtiofs1 → virtiofs1). OSv names devices by probe order and ignores
// tags; the shim gives the N-th device the tag virtiofsN so that a Linux
// guest finds the same one.
func (m Mount) Tag() string { return path.Base(m.Device) }

// NetConfig is the --ip option.
type NetConfig struct {
	Iface  string
	Prefix netip.Prefix // address and netmask, e.g. 10.99.0.2/24
}

// Command is one program of the command line.
type Command struct {
	Argv []string
	// Background is set for a command ended by '&' (or OSv's '&!'): it is
	// started and not waited for; the guest powers off once the foreground
	// commands ended, whether or not it still runs.
	Background bool `json:",omitzero"`
}

// ErrNoCommand is returned by Parse for a command line with no program.
var ErrNoCommand = errors.New("the command line names no program")

// ignoredOptions are OSv loader options this guest accepts without acting on
// them, so that command lines written for real OSv still boot.
var ignoredOptions = map[string]bool{
	"--nomount": true, "--nopivot": true, "--noshutdown": true, "--norandom": true,
	"--power-off-on-abort": true, "--maxnic": true, "--redirect": true,
	"--disable_rofs_cache": true, "--bootchart": true, "--noinit": true,
	"--nopci": true, "--console": true, "--trace": true, "--trace-backtrace": true,
	"--sampler": true, "--delay": true, "--leak": true, "--pass-args": true,
}

// Parse parses an OSv command line with OSv's own grammar (package osv):
// leading loader options, then commands separated by ';' (run in sequence)
// or '&' (run in the background); each command's words get OSv's '$'
// expansion from the --env options, as real OSv does.
func Parse(s string) (*Config, error) {
	l, err := osv.Parse(s)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	for _, o := range l.Options {
		if err := c.option(o); err != nil {
			return nil, err
		}
	}
	lookup := osv.EnvLookup(c.Env)
	for _, cmd := range l.Commands {
		c.Commands = append(c.Commands, Command{Argv: osv.Expand(cmd.Words, lookup), Background: cmd.Background()})
	}
	if len(c.Commands) == 0 {
		return nil, ErrNoCommand
	}
	if c.Gateway.IsValid() && c.Net == nil {
		return nil, errors.New("--defaultgw needs --ip")
	}
	return c, nil
}

// option applies one leading --name[=value] option.
func (c *Config) option(opt string) error {
	name, val, hasVal := strings.Cut(opt, "=")
	need := func() error {
		if !hasVal || val == "" {
			return fmt.Errorf("option %s needs a value (%s=…)", name, name)
		}
		return nil
	}
	switch name {
	case "--env":
		if err := need(); err != nil {
			return err
		}
		if k, _, ok := strings.Cut(val, "="); !ok || k == "" {
			return fmt.Errorf("option %s: want --env=NAME=VALUE", opt)
		}
		c.Env = append(c.Env, val)
	case "--cwd":
		if err := need(); err != nil {
			return err
		}
		c.Cwd = val
	case "--mount-fs":
		if err := need(); err != nil {
			return err
		}
		f := strings.Split(val, ",")
		if len(f) != 3 || f[1] == "" || f[2] == "" {
			return fmt.Errorf("option %s: want --mount-fs=virtiofs,/dev/virtiofsN,DIR", opt)
		}
		if f[0] != "virtiofs" {
			return fmt.Errorf("option %s: file system type %q is not supported (only virtiofs)", opt, f[0])
		}
		c.Mounts = append(c.Mounts, Mount{Type: f[0], Device: f[1], Dir: f[2]})
	case "--ip":
		if err := need(); err != nil {
			return err
		}
		n, err := parseIP(val)
		if err != nil {
			return fmt.Errorf("option %s: %w", opt, err)
		}
		c.Net = n
	case "--defaultgw", "--nameserver":
		if err := need(); err != nil {
			return err
		}
		a, err := netip.ParseAddr(val)
		if err != nil || !a.Is4() {
			return fmt.Errorf("option %s: want an IPv4 address", opt)
		}
		if name == "--defaultgw" {
			c.Gateway = a
		} else {
			c.Nameserver = a
		}
	case "--rootfs":
		if err := need(); err != nil {
			return err
		}
		c.Rootfs = val
	case "--verbose":
		if hasVal {
			return fmt.Errorf("option %s takes no value", name)
		}
		c.Verbose = true
	default:
		if !ignoredOptions[name] {
			return fmt.Errorf("unknown option %s", opt)
		}
		c.Ignored = append(c.Ignored, opt)
	}
	return nil
}

// parseIP parses IFACE,ADDR,NETMASK (NETMASK dotted, e.g. 255.255.255.0).
func parseIP(val string) (*NetConfig, error) {
	f := strings.Split(val, ",")
	if len(f) != 3 || f[0] == "" {
		return nil, errors.New("want --ip=IFACE,ADDR,NETMASK")
	}
	addr, err := netip.ParseAddr(f[1])
	if err != nil || !addr.Is4() {
		return nil, fmt.Errorf("address %q is not an IPv4 address", f[1])
	}
	mask, err := netip.ParseAddr(f[2])
	if err != nil || !mask.Is4() {
		return nil, fmt.Errorf("netmask %q is not a dotted IPv4 netmask", f[2])
	}
	m := mask.As4()
	bits := 0
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	for v&(1<<31) != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return nil, fmt.Errorf("netmask %q is not contiguous", f[2])
	}
	return &NetConfig{Iface: f[0], Prefix: netip.PrefixFrom(addr, bits)}, nil
}
