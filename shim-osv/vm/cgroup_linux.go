package vm

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// cgroup is the container's cgroup, which QEMU and virtiofsd join, so that
// its limits bind the VM and its statistics are the VM's.
type cgroup interface {
	add(pid int) error
	// stats returns the metrics in the runc shim's format (cgroups v1 or
	// v2 Metrics), which `ctr task metrics` reads.
	stats() (*anypb.Any, error)
	// delete kills what still runs in the cgroup — virtiofsd's sandboxed
	// child outlives its parent by a moment — waits until it is empty, and
	// removes it.
	delete() error
}

// newCgroup creates (or takes over) the cgroup at path with res applied,
// in the v2 hierarchy on a unified host, else in the v1 controllers. The
// memory limit is raised by MemoryOverheadMiB: the guest's RAM is the
// limit, QEMU's own memory comes on top.
func newCgroup(path string, res *specs.LinuxResources) (cgroup, error) {
	if res == nil {
		res = &specs.LinuxResources{}
	}
	r := *res
	if m := r.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		mem := *m
		limit := *m.Limit + MemoryOverheadMiB<<20
		mem.Limit = &limit
		mem.Swap = nil // a swap limit below the new memory limit would be refused
		r.Memory = &mem
	}
	r.Devices = nil // QEMU opens /dev/kvm, /dev/net/tun…: the guest's devices are not the host's
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, cgroup2.ToResources(&r))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		return v2{m}, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), &r)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return v1{cg}, nil
}

// loadCgroup opens an existing cgroup, for cleanup after the shim died.
func loadCgroup(path string) (cgroup, error) {
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil, err
		}
		return v2{m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return nil, err
	}
	return v1{cg}, nil
}

type v1 struct{ cg cgroup1.Cgroup }

func (c v1) add(pid int) error { return c.cg.Add(cgroup1.Process{Pid: pid}) }
func (c v1) delete() error {
	err := drain(func() ([]int, error) {
		ps, err := c.cg.Processes(cgroup1.Memory, true)
		pids := make([]int, 0, len(ps))
		for _, p := range ps {
			pids = append(pids, p.Pid)
		}
		return pids, err
	})
	return errors.Join(err, c.cg.Delete())
}
func (c v1) stats() (*anypb.Any, error) {
	m, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}

type v2 struct{ m *cgroup2.Manager }

func (c v2) add(pid int) error { return c.m.AddProc(uint64(pid)) }
func (c v2) stats() (*anypb.Any, error) {
	m, err := c.m.Stat()
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}
func (c v2) delete() error {
	err := drain(func() ([]int, error) {
		ps, err := c.m.Procs(true)
		pids := make([]int, 0, len(ps))
		for _, p := range ps {
			pids = append(pids, int(p))
		}
		return pids, err
	})
	if derr := c.m.Delete(); derr != nil && !errors.Is(derr, os.ErrNotExist) {
		return errors.Join(err, derr)
	}
	return err
}

// drainTimeout bounds how long delete waits for killed processes to go.
const drainTimeout = 5 * time.Second

// drain SIGKILLs the processes procs lists until it lists none, polling
// (a cgroup v1 has no event for "empty" that works everywhere).
func drain(procs func() ([]int, error)) error {
	deadline := time.Now().Add(drainTimeout)
	for {
		pids, err := procs()
		if errors.Is(err, os.ErrNotExist) || (err == nil && len(pids) == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list cgroup processes: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup still has processes %v after SIGKILL", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
