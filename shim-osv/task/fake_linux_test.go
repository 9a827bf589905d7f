package task

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
)

// fakeBackend makes fakeTasks, keeping each by id.
type fakeBackend struct {
	ownEvents bool
	createErr error
	// slowStart makes Start block until the task is killed or its gate
	// opens.
	slowStart bool
	// exitOnStart makes the process end (status 0) as soon as it started.
	exitOnStart bool

	mu    sync.Mutex
	tasks map[string]*fakeTask
}

func (b *fakeBackend) OwnEvents() bool { return b.ownEvents }

func (b *fakeBackend) Create(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec) (Task, *taskAPI.CreateTaskResponse, error) {
	if b.createErr != nil {
		return nil, nil, b.createErr
	}
	t := &fakeTask{status: apitask.Status_CREATED, exited: make(chan struct{}), gate: make(chan struct{}),
		abort: make(chan struct{}), starting: make(chan struct{}), slow: b.slowStart, exitOnStart: b.exitOnStart}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tasks == nil {
		b.tasks = map[string]*fakeTask{}
	}
	b.tasks[r.ID] = t
	return t, &taskAPI.CreateTaskResponse{}, nil
}

func (b *fakeBackend) task(id string) *fakeTask {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tasks[id]
}

// fakeTask keeps the Task contract the way the VM does, with no VM.
type fakeTask struct {
	slow, exitOnStart bool
	gate              chan struct{} // opened to let a slow Start finish
	starting          chan struct{} // closed when Start began
	abort             chan struct{} // closed by a Kill during Start

	mu       sync.Mutex
	status   apitask.Status
	booting  bool
	killSig  uint32
	code     uint32
	at       time.Time
	exited   chan struct{}
	deletes  int
	startErr error
}

const fakePid = 4242

func (t *fakeTask) stop(code uint32) { // with mu held
	if t.status == apitask.Status_STOPPED {
		return
	}
	t.status, t.code, t.at = apitask.Status_STOPPED, code, time.Now()
	close(t.exited)
}

// exit ends the process with code, as the program's own exit.
func (t *fakeTask) exit(code uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stop(code)
}

func (t *fakeTask) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	t.mu.Lock()
	if t.status != apitask.Status_CREATED || t.booting {
		t.mu.Unlock()
		return nil, fmt.Errorf("not created: %w", errdefs.ErrFailedPrecondition)
	}
	t.booting = true
	t.mu.Unlock()
	close(t.starting)
	if t.slow {
		select {
		case <-t.gate:
		case <-t.abort:
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.booting = false
	if t.killSig != 0 {
		t.stop(128 + t.killSig)
		return nil, fmt.Errorf("killed while starting: %w", errdefs.ErrAborted)
	}
	if t.startErr != nil {
		t.stop(1)
		return nil, t.startErr
	}
	t.status = apitask.Status_RUNNING
	if t.exitOnStart {
		t.stop(0)
	}
	return &taskAPI.StartResponse{Pid: fakePid}, nil
}

func (t *fakeTask) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.booting || t.status == apitask.Status_RUNNING || t.status == apitask.Status_PAUSED {
		return nil, fmt.Errorf("running: %w", errdefs.ErrFailedPrecondition)
	}
	t.stop(128 + uint32(syscall.SIGKILL))
	t.deletes++
	return &taskAPI.DeleteResponse{Pid: fakePid, ExitStatus: t.code, ExitedAt: timestamppb.New(t.at)}, nil
}

func (t *fakeTask) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return &taskAPI.StateResponse{ID: r.ID, Status: t.status, ExitStatus: t.code}, nil
}

func (t *fakeTask) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	select {
	case <-t.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return &taskAPI.WaitResponse{ExitStatus: t.code, ExitedAt: timestamppb.New(t.at)}, nil
}

func (t *fakeTask) Kill(ctx context.Context, r *taskAPI.KillRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.status == apitask.Status_STOPPED:
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	case t.booting:
		if t.killSig == 0 {
			t.killSig = r.Signal
			close(t.abort)
		}
	default:
		t.killSig = r.Signal
		t.stop(128 + r.Signal)
	}
	return nil
}

func (t *fakeTask) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	return &taskAPI.PidsResponse{Processes: []*apitask.ProcessInfo{{Pid: fakePid}}}, nil
}

func (t *fakeTask) Pause(ctx context.Context, r *taskAPI.PauseRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status != apitask.Status_RUNNING {
		return fmt.Errorf("not running: %w", errdefs.ErrFailedPrecondition)
	}
	t.status = apitask.Status_PAUSED
	return nil
}

func (t *fakeTask) Resume(ctx context.Context, r *taskAPI.ResumeRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status != apitask.Status_PAUSED {
		return fmt.Errorf("not paused: %w", errdefs.ErrFailedPrecondition)
	}
	t.status = apitask.Status_RUNNING
	return nil
}

func (t *fakeTask) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	return nil, fmt.Errorf("no cgroup: %w", errdefs.ErrNotFound)
}

func (t *fakeTask) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) error {
	return fmt.Errorf("exec: %w", errdefs.ErrNotImplemented)
}

func (t *fakeTask) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) error {
	return fmt.Errorf("resize: %w", errdefs.ErrNotImplemented)
}

func (t *fakeTask) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) error { return nil }

func (t *fakeTask) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) error {
	return fmt.Errorf("update: %w", errdefs.ErrNotImplemented)
}

func (t *fakeTask) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) error {
	return fmt.Errorf("checkpoint: %w", errdefs.ErrNotImplemented)
}

func (t *fakeTask) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{TaskPid: fakePid}, nil
}

// recorder is a shim.Publisher keeping what it was given, in order.
type recorder struct {
	delay time.Duration // each Publish takes this long

	mu     sync.Mutex
	events []events.Event
	topics []string
	closed bool
}

func (p *recorder) Publish(ctx context.Context, topic string, event events.Event) error {
	time.Sleep(p.delay)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("publish %s after close", topic)
	}
	p.topics = append(p.topics, topic)
	p.events = append(p.events, event)
	return nil
}

func (p *recorder) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func (p *recorder) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.topics...)
}

// waitTopics waits until the recorder holds n events and returns their
// topics, failing the test after a deadline.
func (p *recorder) waitTopics(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := p.published()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

// newTestService returns a service whose VMs are b's tasks, publishing to
// the returned recorder, and a bundle with a config.json.
func newTestService(t *testing.T, b Backend) (*Service, *recorder, shutdown.Service, string) {
	t.Helper()
	ctx, sd := shutdown.WithShutdown(context.Background())
	t.Cleanup(sd.Shutdown)
	pub := &recorder{}
	s := newService(ctx, pub, sd, nil, b, nil)
	bundle := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.2.0","process":{"args":["/hello"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return s, pub, sd, bundle
}
