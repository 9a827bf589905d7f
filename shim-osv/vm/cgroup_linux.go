package vm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/feather-edge/feather/shim-osv/cgroup"
)

// vmCgroup is the container's cgroup, which QEMU and virtiofsd join, so
// that its limits bind the VM and its statistics are the VM's.
type vmCgroup interface {
	add(pid int) error
	// stats returns the metrics in the runc shim's format (cgroups v1 or
	// v2 Metrics), which `ctr task metrics` reads.
	stats() (*anypb.Any, error)
	// delete kills what still runs in the cgroup — virtiofsd's sandboxed
	// child outlives its parent by a moment — waits until it is empty, and
	// removes it.
	delete() error
}

// hostCgroups is the host's cgroup hierarchy, found once.
var hostCgroups = sync.OnceValues(cgroup.Host)

// newCgroup creates (or takes over) the cgroup at path with res applied,
// in the v2 hierarchy on a unified host, else in the v1 controllers. The
// memory limit is raised by MemoryOverheadMiB: the guest's RAM is the
// limit, QEMU's own memory comes on top.
func newCgroup(path string, res *specs.LinuxResources) (vmCgroup, error) {
	h, err := hostCgroups()
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
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
	cg, err := h.New(path, &r)
	if err != nil {
		return nil, err
	}
	return fsCgroup{cg}, nil
}

// loadCgroup opens an existing cgroup, for cleanup after the shim died.
func loadCgroup(path string) (vmCgroup, error) {
	h, err := hostCgroups()
	if err != nil {
		return nil, err
	}
	cg, err := h.Load(path)
	if err != nil {
		return nil, err
	}
	return fsCgroup{cg}, nil
}

// fsCgroup is a vmCgroup in cgroupfs.
type fsCgroup struct{ cg *cgroup.Cgroup }

func (c fsCgroup) add(pid int) error { return c.cg.Add(pid) }

func (c fsCgroup) stats() (*anypb.Any, error) {
	m, err := c.cg.Stats()
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}

func (c fsCgroup) delete() error {
	if err := drain(c.cg.Procs); err != nil {
		return err
	}
	return c.cg.Delete()
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
