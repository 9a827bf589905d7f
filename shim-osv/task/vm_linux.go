package task

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/feather-edge/feather/osv"
	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
	"github.com/feather-edge/feather/shim-osv/vm"
	"github.com/feather-edge/feather/vmimage"
)

// vmBackend creates containers as VMs.
type vmBackend struct{}

var _ Backend = vmBackend{}

// OwnEvents: QEMU publishes nothing, the service does.
func (vmBackend) OwnEvents() bool { return false }

// Create mounts the root filesystem, opens the outputs and prepares the VM
// (see vm.Create).
func (vmBackend) Create(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (_ Task, _ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" {
		return nil, nil, fmt.Errorf("restore from a checkpoint: a VM cannot be checkpointed by this shim: %w", errdefs.ErrNotImplemented)
	}
	if r.Terminal {
		return nil, nil, fmt.Errorf("a terminal (-t) is not supported: the VM's console is a serial line copied to stdout: %w", errdefs.ErrNotImplemented)
	}
	rootfs := filepath.Join(r.Bundle, "rootfs")
	if len(r.Rootfs) > 0 {
		if err := mountRootfs(r, rootfs); err != nil {
			return nil, nil, err
		}
		defer func() {
			if retErr != nil {
				_ = mount.UnmountAll(rootfs, 0)
			}
		}()
	}
	stdout, stderr, err := openOutputs(ctx, r.ID, r.Stdout, r.Stderr)
	if err != nil {
		return nil, nil, err
	}
	own := ""
	if len(r.Rootfs) == 1 {
		own = vmimage.OwnDir(r.Rootfs[0].Type, r.Rootfs[0].Source, r.Rootfs[0].Options)
	}
	v, err := vm.Create(ctx, vm.Config{ID: r.ID, Bundle: r.Bundle, Rootfs: rootfs, RootfsOwn: own, Spec: spec,
		Stdout: stdout, Stderr: stderr, Accel: os.Getenv(AccelEnv)})
	if err != nil {
		for _, c := range []interface{ Close() error }{stdout, stderr} {
			if c != nil {
				c.Close()
			}
		}
		return nil, nil, fmt.Errorf("create vm: %w", err)
	}
	log.G(ctx).Info("vm created")
	return &vmTask{vm: v, bundle: r.Bundle, rootfs: rootfs, stdout: r.Stdout}, &taskAPI.CreateTaskResponse{}, nil
}

// vmTask is a container run as a VM: the task API mapped onto vm.VM. The VM
// is the init process; there is no other.
type vmTask struct {
	vm             *vm.VM
	bundle, rootfs string
	stdout         string
}

var _ Task = (*vmTask)(nil)

var errExec = fmt.Errorf("exec: an OSv unikernel runs a single application and has no shell or process to exec into: %w", errdefs.ErrNotImplemented)

// Start boots the VM.
func (t *vmTask) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	if r.ExecID != "" {
		return nil, errExec
	}
	if err := t.vm.Start(ctx); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	return &taskAPI.StartResponse{Pid: uint32(t.vm.Pid())}, nil
}

// Delete removes the VM and unmounts the root filesystem.
func (t *vmTask) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	if r.ExecID != "" {
		return nil, errExec
	}
	if err := t.vm.Delete(ctx); err != nil {
		return nil, err
	}
	if err := mount.UnmountAll(t.rootfs, 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	code, at := t.vm.ExitStatus()
	return &taskAPI.DeleteResponse{Pid: uint32(t.vm.Pid()), ExitStatus: uint32(code), ExitedAt: timestamppb.New(at)}, nil
}

// vmStatus is the task status of each VM state. A booting VM is still
// created: it has not started until Start returns.
var vmStatus = map[vm.Status]apitask.Status{vm.Created: apitask.Status_CREATED, vm.Starting: apitask.Status_CREATED,
	vm.Running: apitask.Status_RUNNING, vm.Paused: apitask.Status_PAUSED, vm.Stopped: apitask.Status_STOPPED}

// State reports the VM's state.
func (t *vmTask) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	if r.ExecID != "" {
		return nil, fmt.Errorf("exec %s: %w", r.ExecID, errdefs.ErrNotFound)
	}
	status := vmStatus[t.vm.Status()]
	resp := &taskAPI.StateResponse{ID: r.ID, Bundle: t.bundle, Pid: uint32(t.vm.Pid()), Status: status, Stdout: t.stdout}
	if status == apitask.Status_STOPPED {
		code, at := t.vm.ExitStatus()
		resp.ExitStatus, resp.ExitedAt = uint32(code), timestamppb.New(at)
	}
	return resp, nil
}

// Wait blocks until the VM has stopped.
func (t *vmTask) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	if r.ExecID != "" {
		return nil, errExec
	}
	select {
	case <-t.vm.Exited():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	code, at := t.vm.ExitStatus()
	return &taskAPI.WaitResponse{ExitStatus: uint32(code), ExitedAt: timestamppb.New(at)}, nil
}

// Kill signals the VM (see vm.VM.Kill); All changes nothing, the VM being
// the only process.
func (t *vmTask) Kill(ctx context.Context, r *taskAPI.KillRequest) error {
	if r.ExecID != "" {
		return errExec
	}
	return t.vm.Kill(ctx, syscall.Signal(r.Signal))
}

// Pids lists QEMU and its virtiofsd helpers. Once the guest's program has
// started, QEMU's entry carries an Info of type osv.ProgramStartedTypeURL:
// how the agent knows that a unikernel is ready.
func (t *vmTask) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	return &taskAPI.PidsResponse{Processes: processes(t.vm.Pids(), t.vm.ProgramStarted())}, nil
}

// processes lists pids, the first (QEMU's) marked when started.
func processes(pids []int, started bool) []*apitask.ProcessInfo {
	var ps []*apitask.ProcessInfo
	for i, pid := range pids {
		p := &apitask.ProcessInfo{Pid: uint32(pid)}
		if i == 0 && started {
			p.Info = &anypb.Any{TypeUrl: osv.ProgramStartedTypeURL}
		}
		ps = append(ps, p)
	}
	return ps
}

// Pause stops the guest's vCPUs.
func (t *vmTask) Pause(ctx context.Context, r *taskAPI.PauseRequest) error { return t.vm.Pause(ctx) }

// Resume continues a paused guest.
func (t *vmTask) Resume(ctx context.Context, r *taskAPI.ResumeRequest) error { return t.vm.Resume(ctx) }

// Stats returns the cgroup metrics of the VM's processes.
func (t *vmTask) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	st, err := t.vm.Stats()
	if err != nil {
		return nil, err
	}
	return &taskAPI.StatsResponse{Stats: st}, nil
}

// Exec is not possible in a unikernel.
func (t *vmTask) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) error { return errExec }

// ResizePty: a VM has no terminal to resize.
func (t *vmTask) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) error {
	return fmt.Errorf("resize: the VM has no terminal, only a serial console: %w", errdefs.ErrNotImplemented)
}

// CloseIO: a VM has nothing to close, it takes no stdin.
func (t *vmTask) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) error { return nil }

// Update cannot change a running VM's resources.
func (t *vmTask) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) error {
	return fmt.Errorf("update: a running VM's memory and CPUs are fixed at boot: %w", errdefs.ErrNotImplemented)
}

// Checkpoint is not supported for a VM.
func (t *vmTask) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) error {
	return fmt.Errorf("checkpoint: saving a VM's memory is not supported by this shim: %w", errdefs.ErrNotImplemented)
}

// Connect answers QEMU's pid.
func (t *vmTask) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{TaskPid: uint32(t.vm.Pid())}, nil
}
