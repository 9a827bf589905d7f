package vm

import (
	"errors"
	"fmt"
	"os"

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
	// delete removes the cgroup; its processes must have ended.
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
func (c v1) delete() error     { return c.cg.Delete() }
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
	if err := c.m.Delete(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
