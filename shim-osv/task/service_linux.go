// Package task is the shim's containerd task service (task API v3 over
// ttrpc). Each container is a Task — a VM, or a container a runc shim runs
// when it is not a VM (a Kubernetes pod's sandbox, an image that is no
// Feather VM image) — made by the Backend of its kind; the service decides
// the kind at Create, then looks the task up once per request and calls it.
// It publishes the events of the tasks whose runtime does not (VMs) through
// one ordered queue.
package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/feather-edge/feather/shim-osv/cri"
	"github.com/feather-edge/feather/shim-osv/runcshim"
	"github.com/feather-edge/feather/shim-osv/shim"
	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
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
	shutdown shutdown.Service
	events   *eventQueue
	kinds    KindSource
	vms      Backend
	runc     Backend // nil: every container is taken for a VM

	mu    sync.Mutex
	tasks map[string]*entry // a nil entry is being created
}

// entry is one container's task and what the service keeps about it. The
// fields above mu never change.
type entry struct {
	id     string
	task   Task
	fields log.Fields // the pod and container, from CRI's annotations
	events bool       // the service publishes the task's events

	mu sync.Mutex
	// exitSent is made by the first Start of the init process and closed
	// once its TaskExit is queued — or, if that Start failed, at once (and
	// reset, as no exit will come). nil before any Start.
	exitSent chan struct{}
	deleting bool // a Delete of the init process is under way
}

// KindSource tells what a container's image asks to run on, unvalidated.
type KindSource interface {
	Kind(ctx context.Context, id string) (vmimage.Kind, error)
}

// New returns the task service. kinds and runc may be nil: then every
// container is taken for a VM.
func New(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, kinds KindSource, runc *runcshim.Shims) (*Service, error) {
	var rb Backend
	if runc != nil {
		rb = runcBackend{runc}
	}
	return newService(ctx, publisher, sd, kinds, vmBackend{}, rb), nil
}

// newService returns a service creating VMs with vms and other containers
// with runc (nil: none).
func newService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, kinds KindSource, vms, runc Backend) *Service {
	s := &Service{shutdown: sd, events: newEventQueue(ctx, publisher), kinds: kinds, vms: vms, runc: runc,
		tasks: map[string]*entry{}}
	sd.RegisterCallback(s.events.close)
	return s
}

// RegisterTTRPC registers the service with the shim's ttrpc server.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

// get returns task id, and ctx with a logger naming the container and its
// pod.
func (s *Service) get(ctx context.Context, id string) (*entry, context.Context, error) {
	s.mu.Lock()
	e := s.tasks[id]
	s.mu.Unlock()
	if e == nil {
		return nil, ctx, errgrpc.ToGRPC(fmt.Errorf("task %s: %w", id, errdefs.ErrNotFound))
	}
	return e, log.WithLogger(ctx, log.G(ctx).WithFields(e.fields)), nil
}

// reply converts a task's error to a gRPC status, the API's edge.
func reply[T any](resp T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, errgrpc.ToGRPC(err)
	}
	return resp, nil
}

// empty is reply for the methods that answer nothing.
func empty(err error) (*emptypb.Empty, error) {
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Create decides how the container runs — as a VM, or through a runc shim
// (see isVM) — and has that backend create it.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	fields := cri.Annotations(spec.Annotations).Fields()
	fields["id"] = r.ID
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(fields))
	s.mu.Lock()
	if _, ok := s.tasks[r.ID]; ok {
		s.mu.Unlock()
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s: %w", r.ID, errdefs.ErrAlreadyExists))
	}
	s.tasks[r.ID] = nil // taken while the backend creates it
	s.mu.Unlock()
	t, resp, events, err := s.create(ctx, r, spec)
	if err != nil {
		s.mu.Lock()
		delete(s.tasks, r.ID)
		s.mu.Unlock()
		return nil, errgrpc.ToGRPC(err)
	}
	if events {
		// Queued before the task can be found, so before its TaskStart.
		s.events.send(&eventstypes.TaskCreate{
			ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Checkpoint: r.Checkpoint,
			IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		})
	}
	s.mu.Lock()
	s.tasks[r.ID] = &entry{id: r.ID, task: t, fields: fields, events: events}
	s.mu.Unlock()
	if resp == nil {
		resp = &taskAPI.CreateTaskResponse{}
	}
	return resp, nil
}

// create has the backend of the container's kind create it, and tells
// whether the service publishes its events.
func (s *Service) create(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (Task, *taskAPI.CreateTaskResponse, bool, error) {
	isVM, err := s.isVM(ctx, r, cri.Annotations(spec.Annotations))
	if err != nil {
		return nil, nil, false, err
	}
	b := s.vms
	if !isVM {
		if s.runc == nil {
			return nil, nil, false, fmt.Errorf("container %s is no VM and this shim has no runc shim to hand it to (it knows no containerd address): %w",
				r.ID, errdefs.ErrFailedPrecondition)
		}
		b = s.runc
	}
	t, resp, err := b.Create(ctx, r, spec)
	return t, resp, !b.OwnEvents(), err
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
		if err := mountRootfs(r, rootfs); err != nil {
			return false, err
		}
		defer mount.UnmountAll(rootfs, 0)
	}
	_, err := os.Lstat(filepath.Join(rootfs, vmimage.DiskPath))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// mountRootfs mounts the root filesystem containerd passed in r at rootfs.
func mountRootfs(r *taskAPI.CreateTaskRequest, rootfs string) error {
	var mounts []mount.Mount
	for _, m := range r.Rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if err := os.MkdirAll(rootfs, 0o711); err != nil {
		return err
	}
	if err := mount.All(mounts, rootfs); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	return nil
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

// Start starts the task; for a task whose events the service publishes,
// TaskStart follows, and TaskExit once the process ended.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if !e.events || r.ExecID != "" {
		return reply(e.task.Start(ctx, r))
	}
	sent, first := e.beginStart()
	resp, err := e.task.Start(ctx, r)
	if err != nil {
		if first {
			e.startFailed(sent)
		}
		return nil, errgrpc.ToGRPC(err)
	}
	s.events.send(&eventstypes.TaskStart{ContainerID: r.ID, Pid: resp.Pid})
	if first {
		go s.sendExit(context.WithoutCancel(ctx), e, resp.Pid, sent)
	}
	return resp, nil
}

// beginStart returns the channel the init's TaskExit closes, and whether
// this Start made it (and so owns it).
func (e *entry) beginStart() (chan struct{}, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.exitSent != nil {
		return e.exitSent, false
	}
	e.exitSent = make(chan struct{})
	return e.exitSent, true
}

// startFailed releases those waiting for an exit that will not come.
func (e *entry) startFailed(sent chan struct{}) {
	e.mu.Lock()
	if e.exitSent == sent {
		e.exitSent = nil
	}
	e.mu.Unlock()
	close(sent)
}

// exitQueued returns a channel closed once the init's TaskExit is queued,
// nil if it never started.
func (e *entry) exitQueued() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exitSent
}

// sendExit queues the init's TaskExit when it ends, then closes sent.
func (s *Service) sendExit(ctx context.Context, e *entry, pid uint32, sent chan struct{}) {
	defer close(sent)
	resp, err := e.task.Wait(ctx, &taskAPI.WaitRequest{ID: e.id})
	if err != nil {
		log.G(ctx).WithError(err).Error("wait for the task's exit: no TaskExit published")
		return
	}
	s.events.send(&eventstypes.TaskExit{ContainerID: e.id, ID: e.id, Pid: pid,
		ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt})
}

// waitQueued waits until the init's TaskExit is queued, if it started.
func waitQueued(ctx context.Context, e *entry) error {
	ch := e.exitQueued()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delete deletes the task (for init: everything it holds) and forgets it;
// for a task whose events the service publishes, TaskDelete follows its
// TaskExit.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		return reply(e.task.Delete(ctx, r))
	}
	e.mu.Lock()
	if e.deleting {
		e.mu.Unlock()
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s is being deleted: %w", r.ID, errdefs.ErrFailedPrecondition))
	}
	e.deleting = true
	e.mu.Unlock()
	resp, err := e.task.Delete(ctx, r)
	if err != nil {
		e.mu.Lock()
		e.deleting = false
		e.mu.Unlock()
		return nil, errgrpc.ToGRPC(err)
	}
	s.mu.Lock()
	delete(s.tasks, r.ID)
	s.mu.Unlock()
	if e.events {
		if err := waitQueued(ctx, e); err != nil {
			log.G(ctx).WithError(err).Warn("TaskDelete published before the task's TaskExit")
		}
		s.events.send(&eventstypes.TaskDelete{ContainerID: r.ID, ID: r.ID, Pid: resp.Pid,
			ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt})
	}
	return resp, nil
}

// State reports the task's state.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return reply(e.task.State(ctx, r))
}

// Wait blocks until the process has ended; for a task whose events the
// service publishes, its TaskExit is queued by then.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	resp, err := e.task.Wait(ctx, r)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if e.events && r.ExecID == "" {
		if err := waitQueued(ctx, e); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
	}
	return resp, nil
}

// Kill signals the task's process.
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return empty(e.task.Kill(ctx, r))
}

// Pids lists the task's processes.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return reply(e.task.Pids(ctx, r))
}

// Pause freezes the task; TaskPaused follows when the service publishes
// its events.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if err := e.task.Pause(ctx, r); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if e.events {
		s.events.send(&eventstypes.TaskPaused{ContainerID: r.ID})
	}
	return &emptypb.Empty{}, nil
}

// Resume continues a paused task; TaskResumed follows when the service
// publishes its events.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if err := e.task.Resume(ctx, r); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if e.events {
		s.events.send(&eventstypes.TaskResumed{ContainerID: r.ID})
	}
	return &emptypb.Empty{}, nil
}

// Stats returns the task's metrics.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return reply(e.task.Stats(ctx, r))
}

// Exec adds a process to the task (a runc shim's container can; a
// unikernel cannot).
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return empty(e.task.Exec(ctx, r))
}

// Checkpoint saves the task (not a VM).
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return empty(e.task.Checkpoint(ctx, r))
}

// ResizePty resizes the task's terminal (a VM has none).
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return empty(e.task.ResizePty(ctx, r))
}

// CloseIO closes the task's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return empty(e.task.CloseIO(ctx, r))
}

// Update changes the task's resources (not a running VM's).
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return empty(e.task.Update(ctx, r))
}

// Connect returns this shim's pid and, for a known task, the task's: QEMU's,
// or the runc shim's container's.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	e, ctx, err := s.get(ctx, r.ID)
	if err != nil {
		return resp, nil
	}
	c, err := e.task.Connect(ctx, r)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp.TaskPid, resp.Version = c.TaskPid, c.Version
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
