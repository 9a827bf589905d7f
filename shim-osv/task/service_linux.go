// Package task is the shim's containerd task service (task API v3 over
// ttrpc): it maps each task request onto the container's VM.
package task

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/feather-edge/feather/shim-osv/vm"
	"github.com/feather-edge/feather/vmimage"
)

// AccelEnv, in the shim's environment (containerd's, which it inherits),
// overrides the accelerator: kvm, tcg or auto (the default: probe).
const AccelEnv = "FEATHER_OSV_ACCEL"

var _ taskAPI.TTRPCTaskService = (*Service)(nil)

// Service serves the tasks of one shim: in practice one container, since
// containerd starts one shim per container for this runtime.
type Service struct {
	publisher shim.Publisher
	shutdown  shutdown.Service
	labels    LabelSource

	mu    sync.Mutex
	tasks map[string]*entry
}

type entry struct {
	id, bundle string
	vm         *vm.VM
	stdout     string
}

// LabelSource returns a container's labels, to check the image's Feather
// labels before booting. It may return ErrNotFound when it cannot tell.
type LabelSource interface {
	Labels(ctx context.Context, id string) (map[string]string, error)
}

// New returns the task service. labels may be nil.
func New(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, labels LabelSource) (*Service, error) {
	s := &Service{publisher: publisher, shutdown: sd, labels: labels, tasks: map[string]*entry{}}
	sd.RegisterCallback(func(context.Context) error { return publisher.Close() })
	return s, nil
}

// RegisterTTRPC registers the service with the shim's ttrpc server.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

func (s *Service) get(id string) (*entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tasks[id]
	if !ok {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s: %w", id, errdefs.ErrNotFound))
	}
	return e, nil
}

// Create mounts the root filesystem and prepares the VM.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("id", r.ID))
	if r.Checkpoint != "" {
		return nil, errgrpc.ToGRPC(fmt.Errorf("restore from a checkpoint: a VM cannot be checkpointed by this shim: %w", errdefs.ErrNotImplemented))
	}
	if r.Terminal {
		return nil, errgrpc.ToGRPC(fmt.Errorf("a terminal (-t) is not supported: the VM's console is a serial line copied to stdout: %w", errdefs.ErrNotImplemented))
	}
	if err := s.checkLabels(ctx, r.ID); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	rootfs := filepath.Join(r.Bundle, "rootfs")
	if len(r.Rootfs) > 0 {
		var mounts []mount.Mount
		for _, m := range r.Rootfs {
			mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
		}
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		if err := mount.All(mounts, rootfs); err != nil {
			return nil, errgrpc.ToGRPC(fmt.Errorf("mount rootfs: %w", err))
		}
		defer func() {
			if retErr != nil {
				_ = mount.UnmountAll(rootfs, 0)
			}
		}()
	}
	stdout, stderr, err := openOutputs(ctx, r.ID, r.Stdout, r.Stderr)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	v, err := vm.Create(ctx, vm.Config{ID: r.ID, Bundle: r.Bundle, Rootfs: rootfs, Spec: spec,
		Stdout: stdout, Stderr: stderr, Accel: os.Getenv(AccelEnv)})
	if err != nil {
		for _, c := range []interface{ Close() error }{stdout, stderr} {
			if c != nil {
				c.Close()
			}
		}
		return nil, errgrpc.ToGRPC(fmt.Errorf("create vm: %w", err))
	}
	s.mu.Lock()
	s.tasks[r.ID] = &entry{id: r.ID, bundle: r.Bundle, vm: v, stdout: r.Stdout}
	s.mu.Unlock()
	s.publish(ctx, runtime.TaskCreateEventTopic, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskAPI.CreateTaskResponse{}, nil
}

// checkLabels refuses an image whose Feather labels name a backend or
// runtime this shim does not run.
func (s *Service) checkLabels(ctx context.Context, id string) error {
	if s.labels == nil {
		return nil
	}
	labels, err := s.labels.Labels(ctx, id)
	if err != nil {
		log.G(ctx).WithError(err).Debug("container labels unavailable; image labels not checked")
		return nil
	}
	return vmimage.KindFromLabels(labels).Validate()
}

func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse config.json: %w", err)
	}
	return &s, nil
}

// Start boots the VM and reports its exit when it ends.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		return nil, errgrpc.ToGRPC(errExec)
	}
	if err := e.vm.Start(ctx); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("start vm: %w", err))
	}
	pid := uint32(e.vm.Pid())
	s.publish(ctx, runtime.TaskStartEventTopic, &eventstypes.TaskStart{ContainerID: r.ID, Pid: pid})
	go func() {
		<-e.vm.Exited()
		code, at := e.vm.ExitStatus()
		s.publish(context.WithoutCancel(ctx), runtime.TaskExitEventTopic, &eventstypes.TaskExit{
			ContainerID: e.id, ID: e.id, Pid: pid, ExitStatus: uint32(code), ExitedAt: timestamppb.New(at)})
	}()
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// Delete removes the VM and unmounts the root filesystem.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		return nil, errgrpc.ToGRPC(errExec)
	}
	if err := e.vm.Delete(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if err := mount.UnmountAll(filepath.Join(e.bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	s.mu.Lock()
	delete(s.tasks, r.ID)
	s.mu.Unlock()
	code, at := e.vm.ExitStatus()
	pid := uint32(e.vm.Pid())
	s.publish(ctx, runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{
		ContainerID: r.ID, ID: r.ID, Pid: pid, ExitStatus: uint32(code), ExitedAt: timestamppb.New(at)})
	return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: uint32(code), ExitedAt: timestamppb.New(at)}, nil
}

// State reports the task's state.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec %s: %w", r.ExecID, errdefs.ErrNotFound))
	}
	status := map[vm.Status]apitask.Status{vm.Created: apitask.Status_CREATED, vm.Running: apitask.Status_RUNNING,
		vm.Paused: apitask.Status_PAUSED, vm.Stopped: apitask.Status_STOPPED}[e.vm.Status()]
	resp := &taskAPI.StateResponse{ID: r.ID, Bundle: e.bundle, Pid: uint32(e.vm.Pid()), Status: status, Stdout: e.stdout}
	if status == apitask.Status_STOPPED {
		code, at := e.vm.ExitStatus()
		resp.ExitStatus, resp.ExitedAt = uint32(code), timestamppb.New(at)
	}
	return resp, nil
}

// Wait blocks until the VM has stopped.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		return nil, errgrpc.ToGRPC(errExec)
	}
	select {
	case <-e.vm.Exited():
	case <-ctx.Done():
		return nil, errgrpc.ToGRPC(ctx.Err())
	}
	code, at := e.vm.ExitStatus()
	return &taskAPI.WaitResponse{ExitStatus: uint32(code), ExitedAt: timestamppb.New(at)}, nil
}

// Kill signals the VM (see vm.VM.Kill).
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		return nil, errgrpc.ToGRPC(errExec)
	}
	if err := e.vm.Kill(ctx, syscall.Signal(r.Signal)); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Pids lists QEMU and its virtiofsd helpers.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	var ps []*apitask.ProcessInfo
	for _, pid := range e.vm.Pids() {
		ps = append(ps, &apitask.ProcessInfo{Pid: uint32(pid)})
	}
	return &taskAPI.PidsResponse{Processes: ps}, nil
}

// Pause stops the guest's vCPUs.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := e.vm.Pause(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	s.publish(ctx, runtime.TaskPausedEventTopic, &eventstypes.TaskPaused{ContainerID: r.ID})
	return &emptypb.Empty{}, nil
}

// Resume continues a paused guest.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := e.vm.Resume(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	s.publish(ctx, runtime.TaskResumedEventTopic, &eventstypes.TaskResumed{ContainerID: r.ID})
	return &emptypb.Empty{}, nil
}

// Stats returns the cgroup metrics of the VM's processes.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	st, err := e.vm.Stats()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &taskAPI.StatsResponse{Stats: st}, nil
}

var errExec = fmt.Errorf("exec: an OSv unikernel runs a single application and has no shell or process to exec into: %w", errdefs.ErrNotImplemented)

// Exec is not possible in a unikernel.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(errExec)
}

// Checkpoint is not supported.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("checkpoint: saving a VM's memory is not supported by this shim: %w", errdefs.ErrNotImplemented))
}

// ResizePty has no terminal to resize.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("resize: the VM has no terminal, only a serial console: %w", errdefs.ErrNotImplemented))
}

// CloseIO has nothing to close: the VM takes no stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	if _, err := s.get(r.ID); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Update cannot change a running VM's resources.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("update: a running VM's memory and CPUs are fixed at boot: %w", errdefs.ErrNotImplemented))
}

// Connect returns the shim's and the VM's pids.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if e, err := s.get(r.ID); err == nil {
		resp.TaskPid = uint32(e.vm.Pid())
	}
	return resp, nil
}

// Shutdown ends the shim once it has no task left.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	if n > 0 {
		return &emptypb.Empty{}, nil
	}
	s.shutdown.Shutdown()
	return &emptypb.Empty{}, nil
}

func (s *Service) publish(ctx context.Context, topic string, event any) {
	if err := s.publisher.Publish(ctx, topic, event); err != nil {
		log.G(ctx).WithError(err).WithField("topic", topic).Warn("publish event")
	}
}
