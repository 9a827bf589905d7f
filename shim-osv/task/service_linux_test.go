package task

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/feather-edge/feather/shim-osv/cri"
	"github.com/feather-edge/feather/shim-osv/runcshim"
	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
	"github.com/feather-edge/feather/vmimage"
)

// kinds is a KindSource answering one kind, or an error.
type kinds struct {
	kind vmimage.Kind
	err  error
}

func (k kinds) Kind(context.Context, string) (vmimage.Kind, error) { return k.kind, k.err }

func TestIsVM(t *testing.T) {
	osv := vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}
	broken := errors.New("containerd unreachable")
	sandbox := cri.Annotations{cri.ContainerType: cri.ContainerTypeSandbox}
	for _, tc := range []struct {
		name  string
		kinds KindSource
		ann   cri.Annotations
		disk  bool // the root filesystem holds feather/disk
		want  bool
		err   error
	}{
		{"labelled VM image", kinds{kind: osv}, nil, true, true, nil},
		{"labelled, no disk yet", kinds{kind: osv}, nil, false, true, nil},
		{"unknown backend", kinds{kind: vmimage.Kind{Backend: "wasm", Runtime: "qemu"}}, nil, true, false, errdefs.ErrInvalidArgument},
		{"container image", kinds{}, nil, false, false, nil},
		{"unlabelled image with a VM disk", kinds{}, nil, true, true, nil},
		{"pod sandbox", kinds{err: broken}, sandbox, false, false, nil},
		{"kind unknown", kinds{err: broken}, nil, false, false, broken},
		{"no containerd to ask", nil, nil, false, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := t.TempDir()
			if tc.disk {
				os.MkdirAll(filepath.Join(bundle, "rootfs", "feather"), 0o755)
				os.WriteFile(filepath.Join(bundle, "rootfs", vmimage.DiskPath), []byte("disk"), 0o644)
			}
			s := &Service{kinds: tc.kinds, runc: runcBackend{runcshim.New(runcshim.Config{})}}
			got, err := s.isVM(context.Background(), &taskAPI.CreateTaskRequest{ID: "c1", Bundle: bundle}, tc.ann)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("isVM = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// step is one request to the service in a lifecycle test, or "exit": the
// program's own end with status exit.
type step struct {
	op   string
	id   string // "" is c1
	sig  syscall.Signal
	code codes.Code // the gRPC code the request answers
	exit uint32     // wait, delete: the exit status answered; exit: the status to end with
	want apitask.Status
}

var (
	tCreate  = runtime.TaskCreateEventTopic
	tStart   = runtime.TaskStartEventTopic
	tExit    = runtime.TaskExitEventTopic
	tDelete  = runtime.TaskDeleteEventTopic
	tPaused  = runtime.TaskPausedEventTopic
	tResumed = runtime.TaskResumedEventTopic
)

func TestServiceLifecycle(t *testing.T) {
	const (
		ok          = codes.OK
		sigkill     = syscall.SIGKILL
		sigterm     = syscall.SIGTERM
		killed      = 128 + uint32(syscall.SIGKILL)
		terminated  = 128 + uint32(syscall.SIGTERM)
		notFound    = codes.NotFound
		precondFail = codes.FailedPrecondition
	)
	for _, tc := range []struct {
		name    string
		backend *fakeBackend
		steps   []step
		events  []string
	}{
		{"runs to its end", &fakeBackend{}, []step{
			{op: "create"}, {op: "state", want: apitask.Status_CREATED}, {op: "start"},
			{op: "state", want: apitask.Status_RUNNING}, {op: "exit", exit: 3}, {op: "wait", exit: 3},
			{op: "state", want: apitask.Status_STOPPED}, {op: "delete", exit: 3},
		}, []string{tCreate, tStart, tExit, tDelete}},
		{"killed", &fakeBackend{}, []step{
			{op: "create"}, {op: "start"}, {op: "kill", sig: sigterm}, {op: "wait", exit: terminated},
			{op: "kill", sig: sigkill, code: notFound}, {op: "delete", exit: terminated},
		}, []string{tCreate, tStart, tExit, tDelete}},
		{"delete while running", &fakeBackend{}, []step{
			{op: "create"}, {op: "start"}, {op: "delete", code: precondFail}, {op: "state", want: apitask.Status_RUNNING},
			{op: "kill", sig: sigkill}, {op: "delete", exit: killed},
		}, []string{tCreate, tStart, tExit, tDelete}},
		{"double delete", &fakeBackend{}, []step{
			{op: "create"}, {op: "start"}, {op: "exit"}, {op: "delete"}, {op: "delete", code: notFound},
			{op: "state", code: notFound}, {op: "wait", code: notFound},
		}, []string{tCreate, tStart, tExit, tDelete}},
		{"kill before start", &fakeBackend{}, []step{
			{op: "create"}, {op: "kill", sig: sigkill}, {op: "start", code: precondFail}, {op: "wait", exit: killed},
			{op: "delete", exit: killed},
		}, []string{tCreate, tDelete}},
		{"deleted without starting", &fakeBackend{}, []step{
			{op: "create"}, {op: "delete", exit: killed}, {op: "start", code: notFound},
		}, []string{tCreate, tDelete}},
		{"started twice", &fakeBackend{}, []step{
			{op: "create"}, {op: "start"}, {op: "start", code: precondFail}, {op: "exit"}, {op: "wait"}, {op: "delete"},
		}, []string{tCreate, tStart, tExit, tDelete}},
		{"created twice", &fakeBackend{}, []step{
			{op: "create"}, {op: "create", code: codes.AlreadyExists}, {op: "delete", exit: killed},
		}, []string{tCreate, tDelete}},
		{"create fails", &fakeBackend{createErr: fmt.Errorf("bad image: %w", errdefs.ErrInvalidArgument)}, []step{
			{op: "create", code: codes.InvalidArgument}, {op: "state", code: notFound},
		}, nil},
		{"a sandbox without a runc shim", &fakeBackend{}, []step{
			{op: "create-sandbox", code: precondFail}, {op: "state", code: notFound},
		}, nil},
		{"paused and resumed", &fakeBackend{}, []step{
			{op: "create"}, {op: "pause", code: precondFail}, {op: "start"}, {op: "pause"},
			{op: "state", want: apitask.Status_PAUSED}, {op: "pause", code: precondFail}, {op: "resume"},
			{op: "resume", code: precondFail}, {op: "kill", sig: sigkill}, {op: "delete", exit: killed},
		}, []string{tCreate, tStart, tPaused, tResumed, tExit, tDelete}},
		{"errors at the edge", &fakeBackend{}, []step{
			{op: "create"}, {op: "exec", code: codes.Unimplemented}, {op: "update", code: codes.Unimplemented},
			{op: "checkpoint", code: codes.Unimplemented}, {op: "resize", code: codes.Unimplemented},
			{op: "stats", code: notFound}, {op: "closeio"}, {op: "pids"}, {op: "connect"},
		}, []string{tCreate}},
		{"unknown id", &fakeBackend{}, []step{
			{op: "create"}, {op: "start", id: "c2", code: notFound}, {op: "kill", id: "c2", code: notFound},
			{op: "wait", id: "c2", code: notFound}, {op: "delete", id: "c2", code: notFound},
			{op: "state", id: "c2", code: notFound}, {op: "pids", id: "c2", code: notFound},
			{op: "pause", id: "c2", code: notFound}, {op: "exec", id: "c2", code: notFound},
			{op: "stats", id: "c2", code: notFound}, {op: "closeio", id: "c2", code: notFound},
		}, []string{tCreate}},
		{"a runtime that publishes its own events", &fakeBackend{ownEvents: true}, []step{
			{op: "create"}, {op: "start"}, {op: "pause"}, {op: "resume"}, {op: "exit", exit: 2}, {op: "wait", exit: 2},
			{op: "delete", exit: 2},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.backend
			s, pub, sd, bundle := newTestService(t, b)
			for i, st := range tc.steps {
				if st.id == "" {
					st.id = "c1"
				}
				if err := st.run(s, b, bundle); status.Code(err) != st.code {
					t.Fatalf("step %d %s %s: %v, want code %s", i, st.op, st.id, err, st.code)
				}
			}
			sd.Shutdown() // drains the event queue
			<-sd.Done()
			if got := pub.published(); !slices.Equal(got, tc.events) {
				t.Errorf("events %v, want %v", got, tc.events)
			}
		})
	}
}

// run sends the step's request and checks what it answered, returning an
// error with the step's gRPC code.
func (st step) run(s *Service, b *fakeBackend, bundle string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	check := func(what string, got, want any) {
		if err == nil && got != want {
			err = status.Errorf(codes.DataLoss, "%s %v, want %v", what, got, want)
		}
	}
	switch st.op {
	case "create":
		_, err = s.Create(ctx, &taskAPI.CreateTaskRequest{ID: st.id, Bundle: bundle})
	case "create-sandbox":
		sb := filepath.Join(bundle, "sandbox")
		os.Mkdir(sb, 0o755)
		os.WriteFile(filepath.Join(sb, "config.json"), []byte(`{"ociVersion":"1.2.0","process":{"args":["/pause"]},"annotations":{"`+
			cri.ContainerType+`":"`+cri.ContainerTypeSandbox+`"}}`), 0o644)
		_, err = s.Create(ctx, &taskAPI.CreateTaskRequest{ID: st.id, Bundle: sb})
	case "start":
		var r *taskAPI.StartResponse
		if r, err = s.Start(ctx, &taskAPI.StartRequest{ID: st.id}); err == nil {
			check("pid", r.Pid, uint32(fakePid))
		}
	case "exit":
		b.task(st.id).exit(st.exit)
	case "kill":
		_, err = s.Kill(ctx, &taskAPI.KillRequest{ID: st.id, Signal: uint32(st.sig)})
	case "wait":
		var r *taskAPI.WaitResponse
		if r, err = s.Wait(ctx, &taskAPI.WaitRequest{ID: st.id}); err == nil {
			check("exit status", r.ExitStatus, st.exit)
		}
	case "delete":
		var r *taskAPI.DeleteResponse
		if r, err = s.Delete(ctx, &taskAPI.DeleteRequest{ID: st.id}); err == nil {
			check("exit status", r.ExitStatus, st.exit)
		}
	case "state":
		var r *taskAPI.StateResponse
		if r, err = s.State(ctx, &taskAPI.StateRequest{ID: st.id}); err == nil {
			check("status", r.Status, st.want)
		}
	case "pause":
		_, err = s.Pause(ctx, &taskAPI.PauseRequest{ID: st.id})
	case "resume":
		_, err = s.Resume(ctx, &taskAPI.ResumeRequest{ID: st.id})
	case "exec":
		_, err = s.Exec(ctx, &taskAPI.ExecProcessRequest{ID: st.id, ExecID: "e1"})
	case "update":
		_, err = s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: st.id})
	case "checkpoint":
		_, err = s.Checkpoint(ctx, &taskAPI.CheckpointTaskRequest{ID: st.id})
	case "resize":
		_, err = s.ResizePty(ctx, &taskAPI.ResizePtyRequest{ID: st.id})
	case "stats":
		_, err = s.Stats(ctx, &taskAPI.StatsRequest{ID: st.id})
	case "closeio":
		_, err = s.CloseIO(ctx, &taskAPI.CloseIORequest{ID: st.id})
	case "pids":
		var r *taskAPI.PidsResponse
		if r, err = s.Pids(ctx, &taskAPI.PidsRequest{ID: st.id}); err == nil {
			check("pids", len(r.Processes), 1)
		}
	case "connect":
		var r *taskAPI.ConnectResponse
		if r, err = s.Connect(ctx, &taskAPI.ConnectRequest{ID: st.id}); err == nil {
			check("task pid", r.TaskPid, uint32(fakePid))
			check("shim pid", r.ShimPid, uint32(os.Getpid()))
		}
	default:
		panic("unknown step " + st.op)
	}
	return err
}

// TestExitBeforeDelete: a task whose process ends the moment it started,
// deleted at once, has its TaskExit published before its TaskDelete, every
// time (the exit is noticed by a goroutine that may run late).
func TestExitBeforeDelete(t *testing.T) {
	b := &fakeBackend{exitOnStart: true}
	s, pub, sd, bundle := newTestService(t, b)
	ctx := context.Background()
	const n = 200
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: id, Bundle: bundle}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 { // half of them waited for first, as ctr does
			if _, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	sd.Shutdown()
	<-sd.Done()
	order := map[string][]string{}
	pub.mu.Lock()
	for i, e := range pub.events {
		var id string
		switch e := e.(type) {
		case *eventstypes.TaskCreate:
			id = e.ContainerID
		case *eventstypes.TaskStart:
			id = e.ContainerID
		case *eventstypes.TaskExit:
			id = e.ContainerID
			if e.Pid != fakePid {
				t.Errorf("%s: TaskExit pid %d, want %d", id, e.Pid, fakePid)
			}
		case *eventstypes.TaskDelete:
			id = e.ContainerID
		}
		order[id] = append(order[id], pub.topics[i])
	}
	pub.mu.Unlock()
	want := []string{tCreate, tStart, tExit, tDelete}
	if len(order) != n {
		t.Errorf("events of %d tasks, want %d", len(order), n)
	}
	for id, got := range order {
		if !slices.Equal(got, want) {
			t.Errorf("%s: events %v, want %v", id, got, want)
		}
	}
}

// TestKillDuringSlowStart: while Start is under way, State and Kill answer
// at once; the Kill ends the start, which fails as aborted, and the task is
// stopped with 128+SIGKILL, with neither TaskStart nor TaskExit.
func TestKillDuringSlowStart(t *testing.T) {
	b := &fakeBackend{slowStart: true}
	s, pub, sd, bundle := newTestService(t, b)
	ctx := context.Background()
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		_, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1"})
		started <- err
	}()
	select {
	case <-b.task("c1").starting:
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not reach the task")
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if st, err := s.State(qctx, &taskAPI.StateRequest{ID: "c1"}); err != nil || st.Status != apitask.Status_CREATED {
		t.Fatalf("State during Start = %v, %v; want CREATED", st, err)
	}
	if _, err := s.Kill(qctx, &taskAPI.KillRequest{ID: "c1", Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatalf("Kill during Start: %v", err)
	}
	select {
	case err := <-started:
		if status.Code(err) != codes.Aborted {
			t.Fatalf("Start = %v, want code Aborted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not end after Kill")
	}
	w, err := s.Wait(qctx, &taskAPI.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 128+uint32(syscall.SIGKILL) {
		t.Fatalf("Wait = %v, %v; want status %d", w, err, 128+syscall.SIGKILL)
	}
	if _, err := s.Delete(qctx, &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	sd.Shutdown()
	<-sd.Done()
	if got, want := pub.published(), []string{tCreate, tDelete}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// TestShutdown: the shim stays while it has a task, and once shut down it
// has published every event queued before it closes the publisher.
func TestShutdown(t *testing.T) {
	b := &fakeBackend{}
	s, pub, sd, bundle := newTestService(t, b)
	pub.delay = 20 * time.Millisecond // containerd is slow to take events
	ctx := context.Background()
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	s.Shutdown(ctx, &taskAPI.ShutdownRequest{})
	select {
	case <-sd.Done():
		t.Fatal("shut down with a task left")
	case <-time.After(50 * time.Millisecond):
	}
	for _, op := range []string{"start", "pause", "resume", "exit", "delete"} {
		if err := (step{op: op, id: "c1"}).run(s, b, bundle); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	s.Shutdown(ctx, &taskAPI.ShutdownRequest{})
	select {
	case <-sd.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not shut down without tasks")
	}
	if got, want := pub.published(), []string{tCreate, tStart, tPaused, tResumed, tExit, tDelete}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if !pub.closed {
		t.Error("publisher not closed")
	}
}
