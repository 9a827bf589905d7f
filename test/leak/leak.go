// Package leak finds what a test or a component left behind: processes and
// mounts tied to a directory tree, network links that were not there before.
// Tests use it to assert that delete and cleanup remove everything they made.
package leak

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Proc is a process found by Processes.
type Proc struct {
	Pid int
	// Cmdline is its command line, arguments joined by spaces.
	Cmdline string
	// Why says how it is tied to the directory: "exe", "cwd", "root" or
	// "cmdline".
	Why string
}

// Processes returns the live processes other than this one that are tied to
// dir: their executable, working directory or root lies under it, their
// command line names a path under it, they run in another mount namespace
// whose mounts come from it (a container on a rootfs there), or they descend
// from such a process. That covers what a test starts with its files in dir —
// daemons, shims, VMs — and the containers they run.
func Processes(dir string) ([]Proc, error) {
	dir = filepath.Clean(dir)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	selfMnt, _ := os.Readlink("/proc/self/ns/mnt")
	var all []Proc
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		base := filepath.Join("/proc", e.Name())
		cmd, err := os.ReadFile(filepath.Join(base, "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue // gone meanwhile, or a kernel thread
		}
		ppid, state, ok := stat(base)
		if !ok || state == 'Z' {
			continue // a zombie holds nothing but its slot
		}
		parent[pid] = ppid
		p := Proc{Pid: pid, Cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))}
		p.Why = tie(base, cmd, dir, selfMnt)
		all = append(all, p)
	}
	tied := map[int]string{}
	for _, p := range all {
		if p.Why != "" {
			tied[p.Pid] = p.Why
		}
	}
	var out []Proc
	for _, p := range all {
		if p.Why == "" {
			// The nearest tied ancestor, if any.
			for a, seen := parent[p.Pid], 0; a > 1 && seen < len(parent); a, seen = parent[a], seen+1 {
				if _, ok := tied[a]; ok {
					p.Why = "child of " + strconv.Itoa(a)
					break
				}
			}
		}
		if p.Why != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// tie says how the process at /proc/<pid> (base) is tied to dir, or "".
func tie(base string, cmd []byte, dir, selfMnt string) string {
	for _, link := range []string{"exe", "cwd", "root"} {
		if target, err := os.Readlink(filepath.Join(base, link)); err == nil && Under(target, dir) {
			return link
		}
	}
	for _, arg := range bytes.Split(cmd, []byte{0}) {
		if mentions(string(arg), dir) {
			return "cmdline"
		}
	}
	// In a mount namespace of its own, paths are its own: look at where
	// its mounts come from instead (an overlay's lowerdir, a bind source).
	if mnt, err := os.Readlink(filepath.Join(base, "ns", "mnt")); err == nil && mnt != selfMnt {
		if b, err := os.ReadFile(filepath.Join(base, "mountinfo")); err == nil && mentions(string(b), dir) {
			return "mounts"
		}
	}
	return ""
}

// mentions reports whether a command-line argument names a path under dir,
// alone or as the value of a flag (--config=DIR/x, unix://DIR/sock).
func mentions(arg, dir string) bool {
	for rest := arg; ; {
		i := strings.Index(rest, dir)
		if i < 0 {
			return false
		}
		rest = rest[i+len(dir):]
		if rest == "" || rest[0] == '/' {
			return true
		}
	}
}

// stat returns the parent and state fields of /proc/<pid>/stat (base).
func stat(base string) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(filepath.Join(base, "stat"))
	if err != nil {
		return 0, 0, false
	}
	// The fields after the command name, which is in parentheses and may
	// hold anything: state, ppid, …
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}

// WaitGone waits up to ten seconds for procs to end, and says which did not.
func WaitGone(procs []Proc) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for alive(p.Pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d (%s) still alive", p.Pid, p.Cmdline)
			}
			time.Sleep(50 * time.Millisecond) // polling /proc: there is no event to wait on for a non-child
		}
	}
	return nil
}

func alive(pid int) bool {
	_, state, ok := stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return ok && state != 'Z'
}

// Mounts returns the mount points under dir (dir included) in this process's
// mount namespace, in the order of /proc/self/mountinfo: parents before the
// mounts on top of them.
func Mounts(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mountsUnder(f, filepath.Clean(dir))
}

// mountsUnder parses mountinfo (proc(5)): the fifth field is the mount
// point, with space, tab, newline and backslash octal-escaped.
func mountsUnder(r io.Reader, dir string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		mp := unescape(fields[4])
		if Under(mp, dir) {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Under reports whether path is dir or lies beneath it.
func Under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Named returns the live processes other than this one whose executable's
// base name is one of names (e.g. "qemu-system-x86_64"), with Why "exe", to
// find what a whole test suite left behind wherever it ran.
func Named(names ...string) ([]Proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		base := filepath.Join("/proc", e.Name())
		exe, err := os.Readlink(filepath.Join(base, "exe"))
		if err != nil || !slices.Contains(names, filepath.Base(strings.TrimSuffix(exe, " (deleted)"))) {
			continue
		}
		if _, state, ok := stat(base); !ok || state == 'Z' {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(base, "cmdline"))
		out = append(out, Proc{Pid: pid, Why: "exe",
			Cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))})
	}
	return out, nil
}
