// Package osv holds OSv's boot conventions, defined once for everyone who
// needs them (the shim renders command lines, flint reads the one an image
// stores, the test guest parses what it is given): the command line its
// loader reads (render, parse, limits) and the lines its console prints
// about the program (exit status, its own diagnostics).
//
// The grammar is OSv v0.57's (loader.cc and core/commands.cc, measured with
// the real OSv in ../shared/osv):
//
//   - Loader options lead the line: words starting with '-', split at space,
//     tab and newline; a backslash makes the next byte literal (so a space in
//     a value is written "\ "). Quotes mean nothing there: a quoted option is
//     not an option but the start of the commands.
//   - Then commands, ended by ';' (run in sequence), '&' (in background),
//     '&!' (background, not waited for) or '!'. A command's words are split at
//     spaces; a word is either bare (no space, ';', '&' or '!') or in double
//     quotes; in both the escapes \a \b \f \n \r \t \v \\ \' \" stand for their
//     byte and any other backslash is itself. Only ASCII parses: any byte of
//     0x80 or above fails the whole line.
//   - After parsing, a word's first '$' starts a variable name: everything
//     from it to the word's end is replaced by that variable's value.
//
// So a command word holding '$', a byte outside printable ASCII or a control
// byte cannot be written on the line itself. Render passes such a word
// through a variable of its own, FEATHER_ARG_<i>, whose value is the word
// (loader options carry any byte but NUL and newline) and writes
// "$FEATHER_ARG_<i>" in its place: the program gets its argument byte for
// byte, and sees that variable in its environment.
package osv

import (
	"fmt"
	"net"
	"strconv"
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

// ArgVarPrefix names the variables that carry command words the line
// cannot (see the package comment): FEATHER_ARG_0 is the program's name,
// FEATHER_ARG_1 its first argument.
const ArgVarPrefix = "FEATHER_ARG_"

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
	Nameservers []net.IP // may be empty; OSv uses the first only
}

// Cmdline is what goes into one OSv command line: one command and the
// loader options that set up its world.
type Cmdline struct {
	// Args are the program and its arguments. Leading words that start
	// with '-' are loader options (e.g. --rootfs=rofs, as images store
	// them), as OSv itself reads a line; the first other word is the
	// program.
	Args    []string
	Env     []string // K=V
	Cwd     string
	Mounts  []Mount
	Network *Network
	// Verbose makes OSv report the program's end on the console (see
	// ParseConsoleLine), which is how the shim learns the exit status; it
	// also makes OSv print every --env, so the console's lines before the
	// program starts must never reach the container's output.
	Verbose bool
	// PowerOffOnAbort makes a crashed program power the VM off instead of
	// halting it with QEMU still running.
	PowerOffOnAbort bool
}

// Render returns c as OSv's loader reads it, or an ErrInvalidArgument error
// naming what OSv's syntax cannot carry.
func (c Cmdline) Render() (string, error) {
	lead, cmd := splitOptions(c.Args)
	if len(cmd) == 0 {
		return "", fmt.Errorf("no command to run: the image has no entrypoint or cmd and none was given: %w", errdefs.ErrInvalidArgument)
	}
	var words []string
	opt := func(name, value string) error {
		w, err := optionWord("--" + name + "=" + value)
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		words = append(words, w)
		return nil
	}
	if c.Verbose {
		words = append(words, "--verbose")
	}
	if c.PowerOffOnAbort {
		words = append(words, "--power-off-on-abort")
	}
	for _, o := range lead {
		w, err := optionWord(o)
		if err != nil {
			return "", fmt.Errorf("loader option %q: %w", o, err)
		}
		words = append(words, w)
	}
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", fmt.Errorf("environment entry %q is not KEY=VALUE: %w", kv, errdefs.ErrInvalidArgument)
		}
		if strings.HasPrefix(k, ArgVarPrefix) {
			return "", fmt.Errorf("environment variable %s: names starting with %s are Feather's own (they carry arguments): %w", k, ArgVarPrefix, errdefs.ErrInvalidArgument)
		}
		if err := opt("env", kv); err != nil {
			return "", fmt.Errorf("environment variable %s: %w", k, err)
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
		if ip4 == nil || len(n.Addr.Mask) != net.IPv4len {
			return "", fmt.Errorf("guest address %v is not IPv4 with a mask: %w", n.Addr, errdefs.ErrInvalidArgument)
		}
		words = append(words, fmt.Sprintf("--ip=%s,%s,%s", n.Interface, ip4, net.IP(n.Addr.Mask)))
		if n.Gateway != nil {
			words = append(words, "--defaultgw="+n.Gateway.String())
		}
		if len(n.Nameservers) > 0 {
			words = append(words, "--nameserver="+n.Nameservers[0].String())
		}
	}
	var tail []string
	for i, a := range cmd {
		if err := carriable(a); err != nil {
			return "", fmt.Errorf("argument %d %q: %w", i, a, err)
		}
		if !lineSafe(a) {
			name := ArgVarPrefix + strconv.Itoa(i)
			if err := opt("env", name+"="+a); err != nil {
				return "", fmt.Errorf("argument %d: %w", i, err)
			}
			tail = append(tail, "$"+name)
			continue
		}
		tail = append(tail, commandWord(a))
	}
	return strings.Join(append(words, tail...), " ") + tailPad, nil
}

// tailPad ends every line. OSv v0.57's loader, once its options hold
// backslash escapes, garbles the 6th and 7th bytes from the line's end,
// copying a neighbour over them (measured with ../shared/osv: 8 to 200
// escapes, lines of 17 to 3,600 bytes; its stresep miscounts what is left
// of the line after each escape). Over trailing blanks, which OSv's grammar
// skips, that copy changes nothing.
const tailPad = "                "

// splitOptions returns args' leading loader options and the command.
func splitOptions(args []string) (options, command []string) {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++
	}
	return args[:i], args[i:]
}

// carriable returns an ErrInvalidArgument error for a word no part of the
// line can carry.
func carriable(w string) error {
	if strings.ContainsAny(w, "\x00\n") {
		return fmt.Errorf("OSv's command line cannot carry a NUL or a line break: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// optionWord writes a loader option: backslash before each backslash, space
// and tab (the loader's delimiters, with newline).
func optionWord(o string) (string, error) {
	if err := carriable(o); err != nil {
		return "", err
	}
	var b strings.Builder
	for i := 0; i < len(o); i++ {
		switch o[i] {
		case '\\', ' ', '\t':
			b.WriteByte('\\')
		}
		b.WriteByte(o[i])
	}
	return b.String(), nil
}

// lineSafe reports whether w can be written as a command word: printable
// ASCII (or tab) and no '$'.
func lineSafe(w string) bool {
	for i := 0; i < len(w); i++ {
		ch := w[i]
		if ch == '$' || ch >= 0x7f || (ch < 0x20 && ch != '\t') {
			return false
		}
	}
	return true
}

// commandWord writes a line-safe word: bare when nothing in it needs
// quoting, else in double quotes with backslashes and quotes escaped.
func commandWord(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t;&!\"'\\") {
		return w
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(w) + `"`
}

// CheckLength returns an ErrInvalidArgument error if cmdline is longer than
// max bytes, saying by how much.
func CheckLength(cmdline string, max int) error {
	if len(cmdline) > max {
		return fmt.Errorf("OSv command line is %d bytes, %d over the limit of %d for this boot mode: shorten the arguments or environment: %w",
			len(cmdline), len(cmdline)-max, max, errdefs.ErrInvalidArgument)
	}
	return nil
}
