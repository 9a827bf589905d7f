package task

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
)

// Task is one container of the shim, whichever way it runs — a VM, or a
// container a runc shim runs — answering the task API for it. The service
// looks the task up once per request and calls it; a request names the
// task's init process (ExecID "") or one exec'd into it.
//
// Contract: methods are safe for concurrent use and hold no lock across
// slow work, so that State, Pids and Kill answer while Start boots, and a
// Kill during Start ends the start. Errors carry errdefs sentinels (or are
// ttrpc statuses already, when forwarded); the service converts them to
// gRPC statuses. In particular:
//   - Start of init runs it once: again, or after the task ended, it is
//     ErrFailedPrecondition. Once Start returned, the process's exit can be
//     observed through Wait; not before.
//   - Kill of a task that ended is ErrNotFound; Kill before Start ends the
//     task without running it (Wait then returns).
//   - Wait blocks until the process ended, or ctx is done (ctx's error).
//   - Delete of a running init is ErrFailedPrecondition; of an ended one
//     it removes everything the task holds and answers its exit. It is
//     called once for init: the service forgets the task after it.
//   - Operations the task's kind cannot do are ErrNotImplemented, with the
//     reason.
type Task interface {
	Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error)
	Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error)
	State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error)
	Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error)
	Kill(ctx context.Context, r *taskAPI.KillRequest) error
	Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error)
	Pause(ctx context.Context, r *taskAPI.PauseRequest) error
	Resume(ctx context.Context, r *taskAPI.ResumeRequest) error
	Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error)
	Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) error
	ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) error
	CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) error
	Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) error
	Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) error
	// Connect answers the task's pid (and the version of the runtime
	// serving it); the service adds its own pid.
	Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error)
}

// Backend creates the tasks of one kind: VMs, or containers of runc shims.
type Backend interface {
	// Create creates the task of r, whose bundle's OCI spec is spec. It
	// may take seconds (an instance disk, a runc shim's start) and is not
	// called twice for one id at a time. On error nothing is left behind.
	Create(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (Task, *taskAPI.CreateTaskResponse, error)
	// OwnEvents reports whether the tasks' runtime publishes their events
	// to containerd itself (a runc shim does); if not, the service
	// publishes them.
	OwnEvents() bool
}
