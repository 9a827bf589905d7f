package stats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// Containerd reads containers' figures from containerd: task metrics, and
// the usage of their snapshots.
type Containerd struct {
	Client *client.Client
	// Unikernel tells whether a containerd runtime runs OSv VMs, whose
	// writable layer is the instance disk in the VM's directory (QEMU's
	// working directory) instead of the snapshot.
	Unikernel func(runtime string) bool
}

var (
	_ Runtime      = (*Containerd)(nil)
	_ GuestRuntime = (*Containerd)(nil)
)

// Metrics asks containerd for the task's metrics (the shim reads its
// cgroup; an OSv shim the VM's).
func (c *Containerd) Metrics(ctx context.Context, id string) (*anypb.Any, time.Time, error) {
	r, err := c.Client.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + strconv.Quote(id)}})
	if err != nil {
		return nil, time.Time{}, errgrpc.ToNative(err)
	}
	for _, m := range r.Metrics {
		if m.ID == id {
			return m.Data, m.Timestamp.AsTime(), nil
		}
	}
	return nil, time.Time{}, fmt.Errorf("task %s: %w", id, errdefs.ErrNotFound)
}

// In QEMU's working directory (the VM's directory) the OSv shim keeps the
// instance disk and a QMP monitor for stats readers (shim-osv/vm.StatsQMP).
const (
	instanceDisk = "disk.qcow2"
	statsQMP     = "qmp-stats.sock"
)

// vmPid returns container id and the pid of its QEMU, 0 when id is not a
// unikernel.
func (c *Containerd) vmPid(ctx context.Context, id string) (containers.Container, int, error) {
	info, err := c.Client.ContainerService().Get(ctx, id)
	if err != nil {
		return info, 0, errgrpc.ToNative(err)
	}
	if c.Unikernel == nil || !c.Unikernel(info.Runtime.Name) {
		return info, 0, nil
	}
	t, err := c.Client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		return info, 0, errgrpc.ToNative(err)
	}
	return info, int(t.Process.Pid), nil
}

// Guest asks a unikernel's QEMU, on the VM's stats monitor, for the guest's
// memory.
func (c *Containerd) Guest(ctx context.Context, id string) (GuestMemory, error) {
	_, pid, err := c.vmPid(ctx, id)
	if err != nil {
		return GuestMemory{}, err
	}
	if pid == 0 {
		return GuestMemory{}, fmt.Errorf("container %s is no VM: %w", id, errdefs.ErrNotImplemented)
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	sock := filepath.Join(proc, "cwd", statsQMP)
	if _, err := os.Stat(sock); err != nil {
		return GuestMemory{}, fmt.Errorf("vm of %s has no stats monitor %s (started by an older shim?): %w", id, sock, errdefs.ErrNotImplemented)
	}
	g, err := queryGuest(ctx, sock, func() (io.ReadCloser, error) { return os.Open(filepath.Join(proc, "smaps")) })
	if err != nil {
		return GuestMemory{}, fmt.Errorf("guest of %s: %w", id, err)
	}
	return g, nil
}

// Rootfs returns the usage of the container's snapshot, or of a
// unikernel's instance disk where the shim made it in its bundle (else it
// is in the snapshot, made by the feather snapshotter).
func (c *Containerd) Rootfs(ctx context.Context, id string) (uint64, uint64, error) {
	info, pid, err := c.vmPid(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	if pid != 0 {
		fi, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "cwd", instanceDisk))
		switch {
		case err == nil:
			return allocated(fi), 0, nil
		case !errors.Is(err, fs.ErrNotExist):
			return 0, 0, fmt.Errorf("instance disk of %s: %w", id, err)
		}
		// None of the shim's own: the snapshotter made it in the
		// container's snapshot (snapshotter/), whose usage counts it.
	}
	if info.Snapshotter == "" || info.SnapshotKey == "" {
		return 0, 0, fmt.Errorf("container %s has no snapshot: %w", id, errdefs.ErrNotFound)
	}
	u, err := c.Client.SnapshotService(info.Snapshotter).Usage(ctx, info.SnapshotKey)
	if err != nil {
		return 0, 0, errgrpc.ToNative(err)
	}
	return uint64(u.Size), uint64(u.Inodes), nil
}
