package pods

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
)

// ErrUnikernelExec is the error of an exec (kubectl exec, an exec probe or
// hook) into a unikernel container: it is errdefs.ErrNotImplemented.
var ErrUnikernelExec = fmt.Errorf("an OSv unikernel runs one program and has no shell to exec into: %w", errdefs.ErrNotImplemented)

// ExecIO are the streams of a process run by Exec. A nil stream is not
// connected: the process's stdin is then closed, its output discarded.
type ExecIO struct {
	// Stdin is copied to the process until EOF, which closes the
	// process's stdin.
	Stdin io.Reader
	// Stdout and Stderr receive its output; with TTY, Stderr is unused
	// (the terminal carries both).
	Stdout, Stderr io.Writer
	// Output, if set, receives stdout and stderr both, as they come,
	// through one pipe (a probe's or a hook's output); Stdout and Stderr
	// are then unused. Without Stdin and TTY only.
	Output io.Writer
	// TTY gives the process a terminal.
	TTY bool
	// Resize, with TTY, sets the terminal's size whenever a value arrives.
	// Exec does not close it.
	Resize <-chan api.TermSize
}

// Exec runs cmd in the running container of pod namespace/podName (the
// latest run of it) as containerd's task Exec does — with the container's
// environment, user and working directory — and returns its exit code once
// it has exited and its output has been copied. It blocks until then; if
// ctx ends first, the process is killed and the error wraps ctx.Err().
//
// Errors: errdefs.ErrNotFound for an unknown pod or container,
// errdefs.ErrFailedPrecondition for a container that does not run now,
// ErrUnikernelExec for a unikernel, errdefs.ErrInvalidArgument for an empty
// cmd. An exec whose binary cannot be run fails in containerd (the error
// says so, e.g. "executable file not found in $PATH").
func (p *Provider) Exec(ctx context.Context, namespace, podName, container string, cmd []string, eio ExecIO) (int, error) {
	w := p.find(namespace, podName)
	if w == nil {
		return -1, fmt.Errorf("pod %s/%s is not on this node: %w", namespace, podName, errdefs.ErrNotFound)
	}
	in, err := w.runningInstance(ctx, container)
	if err != nil {
		return -1, err
	}
	return p.execIn(ctx, in, cmd, eio)
}

// runningInstance returns the latest run of container name if it runs.
func (w *worker) runningInstance(ctx context.Context, name string) (instance, error) {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	if pod == nil {
		return instance{}, fmt.Errorf("pod %s not yet adopted: %w", w.key(), errdefs.ErrNotFound)
	}
	if !hasContainer(pod, name) {
		return instance{}, fmt.Errorf("container %q not found in pod %s: %w", name, w.key(), errdefs.ErrNotFound)
	}
	insts, err := w.p.instances(w.p.ctx(ctx), w.uid, nil)
	if err != nil {
		return instance{}, fmt.Errorf("list containers of pod %s: %w", w.key(), err)
	}
	runs := (&view{instances: insts}).runs(name)
	if len(runs) == 0 || !runs[0].Running {
		return instance{}, fmt.Errorf("container %q in pod %s is not running: %w", name, w.key(), errdefs.ErrFailedPrecondition)
	}
	return runs[0], nil
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// isUnikernel reports whether in runs under a VM runtime.
func (p *Provider) isUnikernel(in instance) bool {
	return in.Runtime != "" && in.Runtime != p.cfg.Runtimes["runc"]
}

// execIn runs cmd in the task of instance in; see Exec.
func (p *Provider) execIn(ctx context.Context, in instance, cmd []string, eio ExecIO) (int, error) {
	if len(cmd) == 0 {
		return -1, fmt.Errorf("exec in %s: no command: %w", in.Name, errdefs.ErrInvalidArgument)
	}
	t, err := p.execTargetOf(ctx, in)
	if err != nil {
		return -1, err
	}
	return p.execWith(ctx, in, t, cmd, eio)
}

// execTarget is what an exec into a run needs from containerd: its task
// and the process of its container's spec (environment, user, working
// directory, capabilities), which an exec process starts from. A run's are
// the same for its whole life (a new run is a new container), so an exec
// probe loads them once.
type execTarget struct {
	task client.Task
	proc specs.Process
}

// execTargetOf loads the task and the spec's process of run in. Errors:
// ErrUnikernelExec for a unikernel, errdefs.ErrFailedPrecondition when it
// has no task.
func (p *Provider) execTargetOf(ctx context.Context, in instance) (*execTarget, error) {
	if p.isUnikernel(in) {
		return nil, fmt.Errorf("exec in container %q: %w", in.Name, ErrUnikernelExec)
	}
	cctx := context.WithoutCancel(p.ctx(ctx))
	c, err := p.cd.LoadContainer(cctx, in.ID)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", in.Name, err)
	}
	task, err := c.Task(cctx, nil)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: container %q is not running: %w", in.Name, in.Name, errdefs.ErrFailedPrecondition)
	}
	spec, err := c.Spec(cctx)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", in.Name, err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("exec in %s: the container's spec has no process: %w", in.Name, errdefs.ErrFailedPrecondition)
	}
	return &execTarget{task: task, proc: *spec.Process}, nil
}

// execWith runs cmd in t, the task of run in; see Exec.
func (p *Provider) execWith(ctx context.Context, in instance, t *execTarget, cmd []string, eio ExecIO) (int, error) {
	if len(cmd) == 0 {
		return -1, fmt.Errorf("exec in %s: no command: %w", in.Name, errdefs.ErrInvalidArgument)
	}
	ctx = p.ctx(ctx)
	// The exec's containerd calls outlive ctx: a cancelled exec is still
	// killed and deleted.
	cctx := context.WithoutCancel(ctx)
	task := t.task
	pspec := t.proc
	pspec.Args = cmd
	pspec.Terminal = eio.TTY
	pspec.ConsoleSize = nil
	if eio.TTY && eio.Resize != nil {
		// The terminal's first size (kubectl sends it as the stream
		// opens) is the process's from its start: runc sets a console's
		// size before the process runs. Set by a resize after the start
		// instead, a program that reads it at once (stty size) could find
		// 0x0, which busybox reports with a stale errno ("No child
		// processes").
		select {
		case sz, ok := <-eio.Resize:
			if ok && sz.Width > 0 && sz.Height > 0 {
				pspec.ConsoleSize = &specs.Box{Width: uint(sz.Width), Height: uint(sz.Height)}
			}
		case <-time.After(firstSizeWait):
		case <-ctx.Done():
			return -1, fmt.Errorf("exec %q in %s: %w", cmd[0], in.Name, ctx.Err())
		}
	}

	// Closing the process's stdin once Stdin is drained needs the process
	// started; started is closed then, and proc set before.
	var proc client.Process
	started := make(chan struct{})
	var closeOnce sync.Once
	closeStdin := func() {
		closeOnce.Do(func() {
			go func() {
				select {
				case <-started:
					_ = proc.CloseIO(cctx, client.WithStdinCloser)
				case <-ctx.Done():
				}
			}()
		})
	}
	var stdin io.Reader
	if eio.Stdin != nil {
		stdin = &eofReader{r: eio.Stdin, eof: closeStdin}
	}
	var stdout, stderr io.Writer
	if eio.Stdout != nil {
		stdout = eio.Stdout
	}
	if eio.Stderr != nil && !eio.TTY {
		stderr = eio.Stderr
	}
	fifoDir := defaults.DefaultFIFODir
	if p.cfg.RunDir != "" {
		fifoDir = filepath.Join(p.cfg.RunDir, "fifo")
	}
	var creator cio.Creator
	switch {
	case eio.Output != nil && (eio.Stdin != nil || eio.TTY):
		return -1, fmt.Errorf("exec in %s: one output for stdout and stderr needs no stdin and no terminal: %w", in.Name, errdefs.ErrInvalidArgument)
	case eio.Output != nil:
		creator = mergedIOCreator(fifoDir, eio.Output)
	default:
		opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(fifoDir)}
		if eio.TTY {
			opts = append(opts, cio.WithTerminal)
		}
		creator = cio.NewCreator(opts...)
	}
	execID := "exec-" + randomHex(8)
	proc, err := task.Exec(cctx, execID, &pspec, creator)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return -1, fmt.Errorf("exec in %s: container %q is not running: %w", in.Name, in.Name, errdefs.ErrFailedPrecondition)
		}
		return -1, fmt.Errorf("exec in %s: %w", in.Name, err)
	}
	exited := false // the process's exit was seen: it needs no kill before its deletion
	defer func() {
		if err := p.deleteExec(cctx, task, proc, exited); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).WithField("exec", execID).Warn("delete exec process")
		}
	}()
	exitCh, err := proc.Wait(cctx)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", in.Name, err)
	}
	if err := proc.Start(cctx); err != nil {
		return -1, fmt.Errorf("exec %q in %s: %w", cmd[0], in.Name, err)
	}
	close(started)
	// Without Stdin the process has no stdin pipe (cio leaves it out), so
	// there is nothing to close.
	done := make(chan struct{})
	defer close(done)
	if eio.TTY && eio.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-eio.Resize:
					if !ok {
						return
					}
					_ = proc.Resize(cctx, uint32(sz.Width), uint32(sz.Height))
				case <-done:
					return
				}
			}
		}()
	}
	var st client.ExitStatus
	select {
	case st = <-exitCh:
		exited = st.Error() == nil
	case <-ctx.Done():
		_ = proc.Kill(cctx, syscall.SIGKILL)
		st = <-exitCh
		exited = st.Error() == nil
		proc.IO().Cancel()
		return -1, fmt.Errorf("exec %q in %s: %w", cmd[0], in.Name, ctx.Err())
	}
	// The output is copied until the process's side of it is closed
	// (by its exit, unless a child it left keeps it open).
	ioDone := make(chan struct{})
	go func() {
		proc.IO().Wait()
		close(ioDone)
	}()
	select {
	case <-ioDone:
	case <-ctx.Done():
		proc.IO().Cancel()
	}
	code, _, err := st.Result()
	if err != nil {
		return -1, fmt.Errorf("exec %q in %s: %w", cmd[0], in.Name, err)
	}
	return int(code), nil
}

// deleteExec deletes exec process proc of task and its IO (copies, fifos).
// One whose exit was seen is deleted with a single call to containerd;
// any other is killed and waited for first (containerd's
// WithProcessKill, then its state, then the deletion: four calls).
func (p *Provider) deleteExec(ctx context.Context, task client.Task, proc client.Process, exited bool) error {
	if !exited {
		_, err := proc.Delete(ctx, client.WithProcessKill)
		return err
	}
	_, err := p.cd.TaskService().DeleteProcess(ctx, &tasks.DeleteProcessRequest{ContainerID: task.ID(), ExecID: proc.ID()})
	if pio := proc.IO(); pio != nil {
		pio.Cancel()
		pio.Wait()
		_ = pio.Close()
	}
	if err != nil {
		return fmt.Errorf("delete exec %s of %s: %w", proc.ID(), task.ID(), errgrpc.ToNative(err))
	}
	return nil
}

// firstSizeWait is how long an exec with a terminal waits for the client's
// first terminal size before it starts the process without one.
const firstSizeWait = time.Second

// eofReader calls eof once its reader is drained.
type eofReader struct {
	r   io.Reader
	eof func()
}

func (e *eofReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil {
		e.eof()
	}
	return n, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
