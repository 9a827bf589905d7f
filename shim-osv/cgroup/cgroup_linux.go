package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hierarchy is where a host's cgroup controllers are mounted.
type Hierarchy struct {
	// Unified is the mount point of the cgroup v2 hierarchy when it holds
	// the controllers (a unified host), else empty.
	Unified string
	// V1 are the cgroup v1 hierarchies a cgroup is made in when Unified is
	// empty (a v1 or hybrid host).
	V1 []Mount
}

// Mount is one mounted cgroup v1 hierarchy.
type Mount struct {
	// Dir is its mount point, e.g. /sys/fs/cgroup/memory.
	Dir string
	// Controllers are the controllers it carries, e.g. "cpu", "cpuacct";
	// a named hierarchy is "name=systemd".
	Controllers []string
}

// has reports whether m carries controller c.
func (m Mount) has(c string) bool {
	for _, x := range m.Controllers {
		if x == c {
			return true
		}
	}
	return false
}

// v1Controllers are the v1 hierarchies a cgroup is made in: those
// containerd's cgroups library uses (and so the runc shim's containers),
// named systemd included.
var v1Controllers = []string{
	"name=systemd", "freezer", "pids", "net_cls", "net_prio", "perf_event", "cpuset", "cpu", "cpuacct",
	"memory", "blkio", "rdma", "devices", "hugetlb",
}

// Cgroup is one container's cgroup. Its methods may be called from several
// goroutines; they only read and write cgroupfs files.
type Cgroup struct {
	// path is the cgroup's path below each hierarchy's root.
	path string
	// unified is true for a cgroup v2 cgroup, whose one directory is
	// dirs[0].
	unified bool
	// dirs are the cgroup's directories, one per hierarchy, and mounts
	// the hierarchies they are in (v1).
	dirs   []string
	mounts []Mount
}

// Path returns the cgroup's path below the hierarchies' roots.
func (c *Cgroup) Path() string { return c.path }

// Unified reports whether the cgroup is a cgroup v2 one.
func (c *Cgroup) Unified() bool { return c.unified }

// cleanPath checks path and makes it absolute and clean; the empty path
// and paths leaving the root are refused.
func cleanPath(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("cgroup path is empty")
	}
	p := filepath.Clean("/" + path)
	if p == "/" {
		return "", fmt.Errorf("cgroup path %q is the root", path)
	}
	return p, nil
}

// New creates (or takes over) the cgroup at path, in the v2 hierarchy when
// h is unified, else in each v1 hierarchy, and writes res into it (nil: no
// limits). It writes what containerd's cgroups library writes for the same
// resources; res.Devices and res.Unified are not written. On error the
// directories it made are removed.
func (h *Hierarchy) New(path string, res *specs.LinuxResources) (*Cgroup, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, err
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	if h.Unified != "" {
		c := &Cgroup{path: p, unified: true, dirs: []string{filepath.Join(h.Unified, p)}}
		if err := createV2(h.Unified, c.dirs[0], res); err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", p, err)
		}
		return c, nil
	}
	c := &Cgroup{path: p}
	for _, m := range h.mounts() {
		dir := filepath.Join(m.Dir, p)
		if err := createV1(m, dir, res); err != nil {
			_ = c.remove()
			return nil, fmt.Errorf("create cgroup %s in %s: %w", p, m.Dir, err)
		}
		c.dirs, c.mounts = append(c.dirs, dir), append(c.mounts, m)
	}
	if len(c.dirs) == 0 {
		return nil, fmt.Errorf("create cgroup %s: no cgroup hierarchy mounted: %w", p, os.ErrNotExist)
	}
	return c, nil
}

// Load opens the existing cgroup at path; an error wrapping os.ErrNotExist
// says it is gone (from every hierarchy).
func (h *Hierarchy) Load(path string) (*Cgroup, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, err
	}
	if h.Unified != "" {
		dir := filepath.Join(h.Unified, p)
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", p, err)
		}
		return &Cgroup{path: p, unified: true, dirs: []string{dir}}, nil
	}
	c := &Cgroup{path: p}
	for _, m := range h.mounts() {
		dir := filepath.Join(m.Dir, p)
		if _, err := os.Stat(dir); err == nil {
			c.dirs, c.mounts = append(c.dirs, dir), append(c.mounts, m)
		}
	}
	if len(c.dirs) == 0 {
		return nil, fmt.Errorf("load cgroup %s: %w", p, os.ErrNotExist)
	}
	return c, nil
}

// mounts returns the v1 hierarchies a cgroup is made in, one per
// hierarchy.
func (h *Hierarchy) mounts() []Mount {
	var out []Mount
	for _, m := range h.V1 {
		for _, c := range v1Controllers {
			if m.has(c) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Add moves process pid into the cgroup (in every v1 hierarchy).
func (c *Cgroup) Add(pid int) error {
	for _, dir := range c.dirs {
		if err := writeProcs(filepath.Join(dir, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("add process %d to cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// writeProcs writes pid to a cgroup.procs file, retrying on EINVAL for a
// moment as containerd's library does (a v1 cpuset whose cpus or mems
// another writer is still filling in).
func writeProcs(file string, pid int) error {
	deadline := time.Now().Add(100 * time.Millisecond)
	for {
		err := os.WriteFile(file, []byte(strconv.Itoa(pid)), 0)
		if err == nil || !errors.Is(err, syscall.EINVAL) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Procs returns the processes in the cgroup and its descendants (in any v1
// hierarchy), each once. A cgroup gone from every hierarchy gives an error
// wrapping os.ErrNotExist.
func (c *Cgroup) Procs() ([]int, error) {
	seen := map[int]bool{}
	var pids []int
	gone := 0
	for _, dir := range c.dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p != dir && errors.Is(err, os.ErrNotExist) {
					return nil // a child removed meanwhile
				}
				return err
			}
			if d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			ps, err := readPids(p)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			for _, pid := range ps {
				if !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return err
		})
		if errors.Is(err, os.ErrNotExist) {
			gone++
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list processes of cgroup %s: %w", dir, err)
		}
	}
	if gone == len(c.dirs) {
		return nil, fmt.Errorf("cgroup %s: %w", c.path, os.ErrNotExist)
	}
	return pids, nil
}

// readPids reads a cgroup.procs file.
func readPids(file string) ([]int, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pids []int
	s := bufio.NewScanner(f)
	for s.Scan() {
		t := strings.TrimSpace(s.Text())
		if t == "" {
			continue
		}
		pid, err := strconv.Atoi(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		pids = append(pids, pid)
	}
	return pids, s.Err()
}

// Delete removes the cgroup, its descendants first, from every hierarchy.
// It fails while a process is still in it; a cgroup already gone is no
// error. The kernel may refuse (EBUSY) for a moment after the last process
// left: Delete retries until a deadline of 500 ms.
func (c *Cgroup) Delete() error {
	pids, err := c.Procs()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		return fmt.Errorf("delete cgroup %s: still has processes %v: %w", c.path, pids, errdefs.ErrFailedPrecondition)
	}
	return c.remove()
}

// remove removes the cgroup's directories, retrying while the kernel still
// holds them.
func (c *Cgroup) remove() error {
	var errs []error
	for _, dir := range c.dirs {
		deadline := time.Now().Add(500 * time.Millisecond)
		for {
			err := removeTree(dir)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
				}
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a cgroup directory and its child cgroups, deepest
// first (a cgroup's files go with its directory: rmdir, not unlink).
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	err = syscall.Rmdir(dir)
	if errors.Is(err, syscall.ENOTEMPTY) {
		// Not cgroupfs (a test's directory): its files are real.
		for _, e := range entries {
			if !e.IsDir() {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		err = syscall.Rmdir(dir)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
