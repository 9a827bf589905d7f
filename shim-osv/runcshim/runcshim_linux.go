// Package runcshim runs the containers that are not VMs — a Kubernetes pod's
// sandbox (pause) container, and containers whose image is not a Feather VM
// image — through containerd's own runc shim, from inside this shim.
//
// containerd groups every container of a CRI pod onto the shim that runs the
// pod's sandbox, so this shim receives them all; for those that are not VMs
// it starts `containerd-shim-runc-v2 … start` in the container's bundle,
// exactly as containerd would (the runc shim groups a pod's containers onto
// one process by the io.kubernetes.cri.sandbox-id annotation), and forwards
// the container's task API calls to it over ttrpc. The runc shim publishes
// the container's events to containerd itself.
package runcshim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	apitask "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/feather-edge/feather/shim-osv/shim"
	taskAPI "github.com/feather-edge/feather/shim-osv/taskapi"
)

// Binary is containerd's runc shim, looked up next to this binary, then on
// $PATH (containerd's, which the shim inherits).
const Binary = "containerd-shim-runc-v2"

// Marker is the file a delegated container's bundle holds: the address of
// the runc shim that runs it. `containerd-shim-osv-v1 delete`, run by
// containerd after this shim died, finds it there (see Cleanup).
const Marker = "feather-runc"

// Config is what the runc shim is started with: the same as containerd
// gave this shim.
type Config struct {
	// Namespace is the containerd namespace; GRPCAddress and TTRPCAddress
	// containerd's sockets; SocketDir where shim sockets go ("" for
	// containerd's default).
	Namespace, GRPCAddress, TTRPCAddress, SocketDir string
	// Debug asks for the runc shim's debug log.
	Debug bool
	// Bundle is this shim's own bundle (its working directory), whose log
	// FIFO containerd already reads.
	Bundle string
}

// Shims starts runc shims and keeps one connection per runc shim process.
// Its methods are safe for concurrent use.
type Shims struct {
	cfg Config

	mu    sync.Mutex
	shims map[string]*Shim // by address
}

// Shim is a connection to one runc shim process, shared by the containers
// it runs.
type Shim struct {
	// Address is the runc shim's socket, unix://….
	Address string
	// Task is its task service.
	Task taskAPI.TTRPCTaskService

	client *ttrpc.Client
	log    io.Closer // the reader of its log FIFO, if this shim opened it
	refs   int
}

// New returns a Shims starting runc shims with cfg.
func New(cfg Config) *Shims {
	return &Shims{cfg: cfg, shims: map[string]*Shim{}}
}

// Start has the runc shim run container id of bundle: it runs the runc
// shim's start action in the bundle (which starts a runc shim process, or
// names the one already running the container's pod), writes Marker, and
// returns a connection to it holding one more reference, to Release once the
// container was deleted. Nothing is created in the runc shim yet: forward the
// container's Create to Shim.Task.
func (s *Shims) Start(ctx context.Context, id, bundle string) (_ *Shim, retErr error) {
	bin, err := Path()
	if err != nil {
		return nil, err
	}
	// The runc shim process writes its log to the FIFO "log" in the
	// bundle it starts in; containerd reads this shim's own bundle's, and
	// for another bundle nobody would: open it here and copy it to this
	// shim's log, as containerd does. A new runc shim waits for that reader
	// before it serves.
	var logr io.ReadCloser
	if filepath.Clean(bundle) != filepath.Clean(s.cfg.Bundle) {
		logr, err = fifo.OpenFifo(ctx, filepath.Join(bundle, "log"), syscall.O_RDWR|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			return nil, fmt.Errorf("open log FIFO of %s: %w", Binary, err)
		}
		defer func() {
			if logr != nil {
				logr.Close()
			}
		}()
	}
	params := &bootapi.BootstrapParams{
		InstanceID:             id,
		Namespace:              s.cfg.Namespace,
		LogLevel:               bootapi.LogLevel_LOG_LEVEL_INFO,
		ContainerdGrpcAddress:  s.cfg.GRPCAddress,
		ContainerdTtrpcAddress: s.cfg.TTRPCAddress,
	}
	if s.cfg.Debug {
		params.LogLevel = bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	if s.cfg.SocketDir != "" {
		params.SocketDir = &s.cfg.SocketDir
	}
	in, err := proto.Marshal(params)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, s.args(id, "start")...)
	cmd.Dir = bundle
	cmd.Stdin = bytes.NewReader(in)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s start: %w: %s", Binary, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(out, &res); err != nil || res.GetAddress() == "" {
		return nil, fmt.Errorf("%s start: unexpected answer %q", Binary, out)
	}
	if res.GetProtocol() != "ttrpc" || res.GetVersion() != 3 {
		return nil, fmt.Errorf("%s start: it serves %s version %d; this shim forwards ttrpc task API v3 only: %w",
			Binary, res.GetProtocol(), res.GetVersion(), errdefs.ErrNotImplemented)
	}
	if err := os.WriteFile(filepath.Join(bundle, Marker), []byte(res.GetAddress()), 0o600); err != nil {
		return nil, err
	}

	if sh := s.ref(res.Address); sh != nil {
		return sh, nil
	}
	client, err := dial(res.Address) // not under mu: it may take seconds
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh, ok := s.shims[res.Address]; ok { // another container's Start dialled meanwhile
		sh.refs++
		client.Close()
		return sh, nil
	}
	sh := &Shim{Address: res.Address, Task: taskAPI.NewTTRPCTaskClient(client), client: client, log: logr, refs: 1}
	if logr != nil {
		go func(r io.Reader) { _, _ = io.Copy(os.Stderr, r) }(logr)
		logr = nil // the Shim owns it now
	}
	s.shims[res.Address] = sh
	log.G(ctx).WithField("address", res.Address).Info("runc shim started")
	return sh, nil
}

// Task is a container a runc shim runs. Its methods forward the container's
// task API calls to that runc shim as they are, so their contracts are the
// runc shim's; the runc shim publishes the container's events to containerd
// itself. Safe for concurrent use.
type Task struct {
	sh    *Shim
	shims *Shims
}

// Create has a runc shim create container r.ID (see Start): it forwards r,
// without this runtime's options, which the runc shim would not read. On
// error the runc shim started for it is asked to shut down and nothing is
// left in the bundle.
func (s *Shims) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*Task, *taskAPI.CreateTaskResponse, error) {
	sh, err := s.Start(ctx, r.ID, r.Bundle)
	if err != nil {
		return nil, nil, err
	}
	req := proto.Clone(r).(*taskAPI.CreateTaskRequest)
	if !strings.HasSuffix(req.Options.GetTypeUrl(), "runc.v1.Options") {
		req.Options = nil
	}
	resp, err := sh.Task.Create(ctx, req)
	if err != nil {
		// A runc shim started for this container alone exits again.
		_, _ = sh.Task.Shutdown(context.WithoutCancel(ctx), &taskAPI.ShutdownRequest{ID: r.ID})
		s.Release(sh)
		_ = os.Remove(filepath.Join(r.Bundle, Marker))
		return nil, nil, err
	}
	log.G(ctx).WithField("runc-shim", sh.Address).Info("not a VM: container created by the runc shim")
	return &Task{sh: sh, shims: s}, resp, nil
}

// Address is the runc shim's socket.
func (t *Task) Address() string { return t.sh.Address }

// Start forwards to the runc shim.
func (t *Task) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	return t.sh.Task.Start(ctx, r)
}

// Delete forwards to the runc shim; after the container's own delete (not
// an exec's) it asks the runc shim to shut down — it exits once it runs no
// other container — and drops this shim's connection to it.
func (t *Task) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	resp, err := t.sh.Task.Delete(ctx, r)
	if err != nil || r.ExecID != "" {
		return resp, err
	}
	if _, err := t.sh.Task.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: r.ID}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		log.G(ctx).WithError(err).Debug("runc shim shutdown")
	}
	t.shims.Release(t.sh)
	return resp, nil
}

// State forwards to the runc shim.
func (t *Task) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	return t.sh.Task.State(ctx, r)
}

// Wait forwards to the runc shim.
func (t *Task) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	return t.sh.Task.Wait(ctx, r)
}

// Kill forwards to the runc shim.
func (t *Task) Kill(ctx context.Context, r *taskAPI.KillRequest) error {
	_, err := t.sh.Task.Kill(ctx, r)
	return err
}

// Pids forwards to the runc shim.
func (t *Task) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	return t.sh.Task.Pids(ctx, r)
}

// Pause forwards to the runc shim.
func (t *Task) Pause(ctx context.Context, r *taskAPI.PauseRequest) error {
	_, err := t.sh.Task.Pause(ctx, r)
	return err
}

// Resume forwards to the runc shim.
func (t *Task) Resume(ctx context.Context, r *taskAPI.ResumeRequest) error {
	_, err := t.sh.Task.Resume(ctx, r)
	return err
}

// Stats forwards to the runc shim.
func (t *Task) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	return t.sh.Task.Stats(ctx, r)
}

// Exec forwards to the runc shim.
func (t *Task) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) error {
	_, err := t.sh.Task.Exec(ctx, r)
	return err
}

// ResizePty forwards to the runc shim.
func (t *Task) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) error {
	_, err := t.sh.Task.ResizePty(ctx, r)
	return err
}

// CloseIO forwards to the runc shim.
func (t *Task) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) error {
	_, err := t.sh.Task.CloseIO(ctx, r)
	return err
}

// Update forwards to the runc shim.
func (t *Task) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) error {
	_, err := t.sh.Task.Update(ctx, r)
	return err
}

// Checkpoint forwards to the runc shim.
func (t *Task) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) error {
	_, err := t.sh.Task.Checkpoint(ctx, r)
	return err
}

// Connect forwards to the runc shim: its answer names the runc shim's pid
// and the container's.
func (t *Task) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return t.sh.Task.Connect(ctx, r)
}

// ref returns the connection to the runc shim at address with one more
// reference, nil if there is none.
func (s *Shims) ref(address string) *Shim {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, ok := s.shims[address]
	if !ok {
		return nil
	}
	sh.refs++
	return sh
}

// Release drops a reference taken by Start. The last one closes the
// connection: by then containerd deleted the shim's containers, and asked it
// to shut down through Shim.Task.
func (s *Shims) Release(sh *Shim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh.refs--
	if sh.refs > 0 {
		return
	}
	delete(s.shims, sh.Address)
	sh.client.Close()
	if sh.log != nil {
		sh.log.Close()
	}
}

func (s *Shims) args(id, action string) []string {
	args := []string{"-namespace", s.cfg.Namespace, "-address", s.cfg.GRPCAddress, "-id", id}
	if s.cfg.Debug {
		args = append(args, "-debug")
	}
	return append(args, action)
}

func dial(address string) (*ttrpc.Client, error) {
	conn, err := shim.Dial(address, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to %s at %s: %w", Binary, address, err)
	}
	return ttrpc.NewClient(conn), nil
}

// Path finds the runc shim: next to this binary, else on $PATH.
func Path() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), Binary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(Binary)
	if err != nil {
		return "", fmt.Errorf("%s not found next to this shim or on PATH: containers that are not VMs (a pod's sandbox among them) run through it; install containerd's runc shim: %w",
			Binary, errdefs.ErrFailedPrecondition)
	}
	return p, nil
}

// Delegated reports whether the container of bundle was handed to a runc
// shim (its bundle holds Marker).
func Delegated(bundle string) bool {
	_, err := os.Stat(filepath.Join(bundle, Marker))
	return err == nil
}

// Cleanup removes a delegated container after this shim died, for
// `containerd-shim-osv-v1 delete` in the container's bundle: while the runc
// shim still runs, it is asked to kill and delete the container and to shut
// down once it runs no other; else `containerd-shim-runc-v2 delete` cleans
// up as after its own death. It returns the container's exit.
func Cleanup(ctx context.Context, cfg Config, id, bundle string) (shim.StopStatus, error) {
	b, err := os.ReadFile(filepath.Join(bundle, Marker))
	if err != nil {
		return shim.StopStatus{}, err
	}
	if st, err := cleanupThrough(ctx, string(b), id); err == nil {
		return st, nil
	} else {
		log.G(ctx).WithError(err).Info("runc shim unreachable; running its delete action")
	}
	bin, err := Path()
	if err != nil {
		return shim.StopStatus{}, err
	}
	s := &Shims{cfg: cfg}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-bundle", bundle}, s.args(id, "delete")...)...)
	cmd.Dir = bundle
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return shim.StopStatus{}, fmt.Errorf("%s delete: %w: %s", Binary, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var resp taskAPI.DeleteResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		return shim.StopStatus{}, fmt.Errorf("%s delete: %w", Binary, err)
	}
	return shim.StopStatus{Pid: int(resp.Pid), ExitStatus: int(resp.ExitStatus), ExitedAt: resp.ExitedAt.AsTime()}, nil
}

// cleanupThrough kills and deletes container id through the running runc
// shim at address, and asks it to shut down.
func cleanupThrough(ctx context.Context, address, id string) (shim.StopStatus, error) {
	client, err := dial(address)
	if err != nil {
		return shim.StopStatus{}, err
	}
	defer client.Close()
	ns, _ := namespaces.Namespace(ctx)
	ctx = namespaces.WithNamespace(ctx, ns)
	task := taskAPI.NewTTRPCTaskClient(client)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := task.State(cctx, &taskAPI.StateRequest{ID: id})
	if err != nil {
		return shim.StopStatus{}, err
	}
	if st.Status != apitask.Status_STOPPED && st.Status != apitask.Status_CREATED {
		if _, err := task.Kill(cctx, &taskAPI.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
			return shim.StopStatus{}, err
		}
		if _, err := task.Wait(cctx, &taskAPI.WaitRequest{ID: id}); err != nil {
			return shim.StopStatus{}, err
		}
	}
	resp, err := task.Delete(cctx, &taskAPI.DeleteRequest{ID: id})
	if err != nil {
		return shim.StopStatus{}, err
	}
	if _, err := task.Shutdown(cctx, &taskAPI.ShutdownRequest{ID: id}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		log.G(ctx).WithError(err).Debug("runc shim shutdown")
	}
	return shim.StopStatus{Pid: int(resp.Pid), ExitStatus: int(resp.ExitStatus), ExitedAt: resp.ExitedAt.AsTime()}, nil
}
