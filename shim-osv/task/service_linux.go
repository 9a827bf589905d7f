// Package task is the shim's containerd task service (task API v3 over
// ttrpc): it maps each task request onto the container's VM, or forwards it
// to the runc shim that runs the container when it is not a VM (a
// Kubernetes pod's sandbox, an image that is no Feather VM image).
package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/feather-edge/feather/shim-osv/cri"
	"github.com/feather-edge/feather/shim-osv/runcshim"
	"github.com/feather-edge/feather/shim-osv/vm"
	"github.com/feather-edge/feather/vmimage"
)

// AccelEnv, in the shim's environment (containerd's, which it inherits),
// overrides the accelerator: kvm, tcg or auto (the default: probe).
const AccelEnv = "FEATHER_OSV_ACCEL"

var _ taskAPI.TTRPCTaskService = (*Service)(nil)

// Service serves the tasks of one shim daemon: one container run with
// ctr, or every container of a Kubernetes pod (containerd sends a pod's
// containers to the shim of its sandbox).
type Service struct {
	publisher shim.Publisher
	shutdown  shutdown.Service
	kinds     KindSource
	runc      *runcshim.Shims

	mu    sync.Mutex
	tasks map[string]*entry
}

// entry is one container: a VM, or a container a runc shim runs.
type entry struct {
	id, bundle string
	vm         *vm.VM
	runc       *runcshim.Shim
	stdout     string
	fields     log.Fields // the pod and container, from CRI's annotations
}

// KindSource tells what a container's image asks to run on, unvalidated.
type KindSource interface {
	Kind(ctx context.Context, id string) (vmimage.Kind, error)
}

// New returns the task service. kinds and runc may be nil: then every
// container is taken for a VM.
func New(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, kinds KindSource, runc *runcshim.Shims) (*Service, error) {
	s := &Service{publisher: publisher, shutdown: sd, kinds: kinds, runc: runc, tasks: map[string]*entry{}}
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

// logger returns ctx with a logger naming the container and its pod.
func (e *entry) logger(ctx context.Context) context.Context {
	return log.WithLogger(ctx, log.G(ctx).WithFields(e.fields))
}

// Create decides how the container runs — as a VM, or through a runc shim
// (see isVM) — and creates it: for a VM, mounts the root filesystem and
// prepares the VM.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	fields := cri.Annotations(spec.Annotations).Fields()
	fields["id"] = r.ID
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(fields))
	isVM, err := s.isVM(ctx, r, cri.Annotations(spec.Annotations))
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if !isVM {
		return s.createDelegated(ctx, r, fields)
	}
	if r.Checkpoint != "" {
		return nil, errgrpc.ToGRPC(fmt.Errorf("restore from a checkpoint: a VM cannot be checkpointed by this shim: %w", errdefs.ErrNotImplemented))
	}
	if r.Terminal {
		return nil, errgrpc.ToGRPC(fmt.Errorf("a terminal (-t) is not supported: the VM's console is a serial line copied to stdout: %w", errdefs.ErrNotImplemented))
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
	s.tasks[r.ID] = &entry{id: r.ID, bundle: r.Bundle, vm: v, stdout: r.Stdout, fields: fields}
	s.mu.Unlock()
	log.G(ctx).Info("vm created")
	s.publish(ctx, runtime.TaskCreateEventTopic, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskAPI.CreateTaskResponse{}, nil
}

// isVM tells whether the container runs as a VM: not a pod's sandbox,
// and its image is a Feather VM image — labelled so (the image's unknown
// backend or runtime is an error), or, unlabelled, holding a VM disk.
// Without a KindSource every container is taken for a VM.
func (s *Service) isVM(ctx context.Context, r *taskAPI.CreateTaskRequest, ann cri.Annotations) (bool, error) {
	if ann.IsSandbox() {
		return false, nil
	}
	if s.kinds == nil || s.runc == nil {
		return true, nil
	}
	k, err := s.kinds.Kind(ctx, r.ID)
	if err != nil {
		return false, fmt.Errorf("tell whether container %s is a VM: %w", r.ID, err)
	}
	if k.IsVM() {
		return true, k.Validate()
	}
	return hasDisk(r)
}

// hasDisk tells whether the container's root filesystem holds a VM disk,
// mounting it for a moment when containerd passed its mounts.
func hasDisk(r *taskAPI.CreateTaskRequest) (bool, error) {
	rootfs := filepath.Join(r.Bundle, "rootfs")
	if len(r.Rootfs) > 0 {
		var mounts []mount.Mount
		for _, m := range r.Rootfs {
			mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
		}
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return false, err
		}
		if err := mount.All(mounts, rootfs); err != nil {
			return false, fmt.Errorf("mount rootfs: %w", err)
		}
		defer mount.UnmountAll(rootfs, 0)
	}
	_, err := os.Lstat(filepath.Join(rootfs, vmimage.DiskPath))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// createDelegated has a runc shim create the container (see runcshim).
func (s *Service) createDelegated(ctx context.Context, r *taskAPI.CreateTaskRequest, fields log.Fields) (*taskAPI.CreateTaskResponse, error) {
	sh, err := s.runc.Start(ctx, r.ID, r.Bundle)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	req := proto.Clone(r).(*taskAPI.CreateTaskRequest)
	if !strings.HasSuffix(req.Options.GetTypeUrl(), "runc.v1.Options") {
		req.Options = nil // options of this runtime, which the runc shim would not read
	}
	resp, err := sh.Task.Create(ctx, req)
	if err != nil {
		// A runc shim started for this container alone exits again.
		_, _ = sh.Task.Shutdown(context.WithoutCancel(ctx), &taskAPI.ShutdownRequest{ID: r.ID})
		s.runc.Release(sh)
		_ = os.Remove(filepath.Join(r.Bundle, runcshim.Marker))
		return nil, err
	}
	s.mu.Lock()
	s.tasks[r.ID] = &entry{id: r.ID, bundle: r.Bundle, runc: sh, stdout: r.Stdout, fields: fields}
	s.mu.Unlock()
	log.G(ctx).WithField("runc-shim", sh.Address).Info("not a VM: container created by the runc shim")
	return resp, nil
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
	if e.runc != nil {
		return e.runc.Task.Start(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
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

// Delete removes the VM and unmounts the root filesystem; for a container
// of a runc shim, it has the runc shim delete it, and shut down once it
// runs no other.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	e, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	ctx = e.logger(ctx)
	if e.runc != nil {
		resp, err := e.runc.Task.Delete(ctx, r)
		if err != nil || r.ExecID != "" {
			return resp, err
		}
		s.mu.Lock()
		delete(s.tasks, r.ID)
		s.mu.Unlock()
		if _, err := e.runc.Task.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: r.ID}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
			log.G(ctx).WithError(err).Debug("runc shim shutdown")
		}
		s.runc.Release(e.runc)
		return resp, nil
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
	if e.runc != nil {
		return e.runc.Task.State(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
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
	if e.runc != nil {
		return e.runc.Task.Wait(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
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
	if e.runc != nil {
		return e.runc.Task.Kill(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
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
	if e.runc != nil {
		return e.runc.Task.Pids(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
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
	if e.runc != nil {
		return e.runc.Task.Pause(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
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
	if e.runc != nil {
		return e.runc.Task.Resume(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
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
	if e.runc != nil {
		return e.runc.Task.Stats(e.logger(ctx), r)
	}
	ctx = e.logger(ctx)
	st, err := e.vm.Stats()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &taskAPI.StatsResponse{Stats: st}, nil
}

var errExec = fmt.Errorf("exec: an OSv unikernel runs a single application and has no shell or process to exec into: %w", errdefs.ErrNotImplemented)

// delegated returns the runc shim running container id, nil for a VM.
func (s *Service) delegated(id string) *runcshim.Shim {
	if e, err := s.get(id); err == nil {
		return e.runc
	}
	return nil
}

// Exec is not possible in a unikernel; a runc shim's container can.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	if sh := s.delegated(r.ID); sh != nil {
		return sh.Task.Exec(ctx, r)
	}
	return nil, errgrpc.ToGRPC(errExec)
}

// Checkpoint is not supported for a VM.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	if sh := s.delegated(r.ID); sh != nil {
		return sh.Task.Checkpoint(ctx, r)
	}
	return nil, errgrpc.ToGRPC(fmt.Errorf("checkpoint: saving a VM's memory is not supported by this shim: %w", errdefs.ErrNotImplemented))
}

// ResizePty: a VM has no terminal to resize.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	if sh := s.delegated(r.ID); sh != nil {
		return sh.Task.ResizePty(ctx, r)
	}
	return nil, errgrpc.ToGRPC(fmt.Errorf("resize: the VM has no terminal, only a serial console: %w", errdefs.ErrNotImplemented))
}

// CloseIO: a VM has nothing to close, it takes no stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	if _, err := s.get(r.ID); err != nil {
		return nil, err
	}
	if sh := s.delegated(r.ID); sh != nil {
		return sh.Task.CloseIO(ctx, r)
	}
	return &emptypb.Empty{}, nil
}

// Update cannot change a running VM's resources.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	if sh := s.delegated(r.ID); sh != nil {
		return sh.Task.Update(ctx, r)
	}
	return nil, errgrpc.ToGRPC(fmt.Errorf("update: a running VM's memory and CPUs are fixed at boot: %w", errdefs.ErrNotImplemented))
}

// Connect returns this shim's pid and the task's: QEMU's, or the runc
// shim's container's.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	e, err := s.get(r.ID)
	switch {
	case err != nil:
	case e.runc != nil:
		c, err := e.runc.Task.Connect(ctx, r)
		if err != nil {
			return nil, err
		}
		resp.TaskPid, resp.Version = c.TaskPid, c.Version
	default:
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
