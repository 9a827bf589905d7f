package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	vkerrdefs "github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/feather-edge/feather/kubelet/logs"
	"github.com/feather-edge/feather/kubelet/stdio"
)

// unikernelNoShell is why a unikernel cannot be exec'd into.
const unikernelNoShell = "it is an OSv unikernel, which runs one program and has no shell or second process to exec (kubectl logs and port-forward work)"

// ErrUnikernelAttach is the error of kubectl attach to a unikernel with
// stdin: its console is its log, and it reads no input.
var ErrUnikernelAttach = errdefs.ErrNotImplemented.WithMessage("an OSv unikernel runs one program and reads no input: attach without -i shows its output, as kubectl logs -f does")

// CheckStream answers, before a kubelet API exec or attach stream is set up,
// whether it can run, with kubelet's answers: `pod does not exist` and
// `container not found ("NAME")` for a pod or a container that does not run
// here now (errdefs.ErrNotFound), and the unikernel refusal
// (errdefs.ErrNotImplemented) for an exec into a unikernel. exec says which
// of the two is asked. The agent answers these as kubelet does, with an HTTP
// error instead of an upgrade, so kubectl prints them as `unable to upgrade
// connection: …`.
func (p *Provider) CheckStream(ctx context.Context, namespace, name, container string, exec bool) error {
	w := p.find(namespace, name)
	if w == nil {
		return errdefs.ErrNotFound.WithMessage("pod does not exist")
	}
	in, err := w.runningInstance(ctx, container)
	if errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("container not found (%q)", container))
	}
	if err != nil {
		return err
	}
	if exec && p.isUnikernel(in) {
		return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("cannot exec in container %q of pod %s/%s: %s", container, namespace, name, unikernelNoShell))
	}
	return nil
}

// RunInContainer runs cmd in a running container, for kubectl exec (and cp,
// which execs tar), on [Provider.Exec]: stdin, stdout, stderr, TTY and
// resizing as the client asks. A non-zero exit code is returned as the
// k8s.io/utils/exec.ExitError that the kubelet API turns into kubectl's exit
// code.
func (p *Provider) RunInContainer(ctx context.Context, namespace, name, container string, cmd []string, attach api.AttachIO) error {
	eio := ExecIO{TTY: attach.TTY()}
	if rs := attach.Resize(); rs != nil {
		ch := make(chan api.TermSize)
		eio.Resize = ch
		go func() {
			defer close(ch)
			for {
				select {
				case sz, ok := <-rs:
					if !ok {
						return
					}
					log.G(ctx).WithField("pod", namespace+"/"+name).WithField("container", container).Debugf("exec terminal resized to %dx%d", sz.Width, sz.Height)
					select {
					case ch <- sz:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if in := attach.Stdin(); in != nil {
		eio.Stdin = in
	}
	if out := attach.Stdout(); out != nil {
		eio.Stdout = out
	}
	if e := attach.Stderr(); e != nil {
		eio.Stderr = e
	}
	code, err := p.Exec(ctx, namespace, name, container, cmd, eio)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// AttachToContainer is kubectl attach to a running container, until the
// container exits or the client goes: it shows the container's stdout and
// stderr from now on as they reach the container's log (so what an attached
// session sees is in kubectl logs too), and, for a container that takes
// input (stdin: true), writes the client's input to its stdin through the
// container's stdio helper (kubelet/stdio). As kubelet does, the end of the
// client's input ends the session, except in a stdinOnce container, whose
// stdin it closes (for a terminal: sends ^D) while the session goes on until
// the container exits. Input to a container without stdin is dropped, as
// containerd's CRI plugin drops it; a unikernel reads no input, and attach
// with input to one is refused.
func (p *Provider) AttachToContainer(ctx context.Context, namespace, name, container string, attach api.AttachIO) error {
	if err := p.CheckStream(ctx, namespace, name, container, false); err != nil {
		return err
	}
	w := p.find(namespace, name)
	if w == nil {
		return vkerrdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	in, err := w.runningInstance(ctx, container)
	if err != nil {
		return err
	}
	unikernel := p.isUnikernel(in)
	if attach.Stdin() != nil && unikernel {
		return ErrUnikernelAttach
	}
	spec := w.containerSpec(container)
	path, done, err := w.logFor(ctx, container, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logger := log.G(ctx).WithField("pod", namespace+"/"+name).WithField("container", container)

	// A container with stdin has a helper, whose end says the log is
	// complete (better than the task's exit, after which output may still
	// be on its way).
	var conn *net.UnixConn
	if spec != nil && spec.Stdin && !unikernel {
		conn, err = stdio.Dial(ctx, stdio.PathsFor(p.stdioDir(), in.ID), attach.Stdin() != nil)
		switch {
		case errors.Is(err, stdio.ErrNoHelper):
			logger.WithError(err).Debug("attach: no stdio helper (the container has just ended)")
		case err != nil:
			return err
		default:
			defer conn.Close()
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				_, _ = io.Copy(io.Discard, conn)
			}()
			done = ended
		}
	} else if attach.Stdin() != nil {
		logger.Debug("attach: the container does not take input (stdin: false); the client's input is dropped")
	}

	// The readers start at the log's end before any input is written, so
	// that the session sees all that its input makes the container write.
	var readers []io.ReadCloser
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	type output struct {
		r   io.Reader
		out io.Writer
	}
	var outs []output
	add := func(s logs.StreamType, out io.Writer) error {
		r, err := logs.NewReader(ctx, path, logs.Options{Tail: 0, Follow: true, Stream: s}, done)
		if err != nil {
			return err
		}
		readers = append(readers, r)
		outs = append(outs, output{r, out})
		return nil
	}
	stdout, stderr := attach.Stdout(), attach.Stderr()
	if attach.TTY() && stdout != nil {
		// One terminal carries both streams.
		err = add("", stdout)
	} else {
		if stdout != nil {
			err = add(logs.Stdout, stdout)
		}
		if err == nil && stderr != nil {
			err = add(logs.Stderr, stderr)
		}
	}
	if err != nil {
		return err
	}

	if conn != nil && attach.Stdin() != nil {
		go func() {
			_, _ = io.Copy(conn, attach.Stdin())
			_ = conn.CloseWrite()
			if !spec.StdinOnce {
				cancel() // the session ends with its input
			}
		}()
	}
	if rs := attach.Resize(); rs != nil && spec != nil && spec.TTY && !unikernel {
		go p.resizeTask(ctx, in.ID, rs)
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.Copy(o.out, o.r); err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// resizeTask sets the size of the terminal of container id's task to each
// size that arrives, until ctx is done or sizes is closed.
func (p *Provider) resizeTask(ctx context.Context, id string, sizes <-chan api.TermSize) {
	cctx := p.ctx(ctx)
	c, err := p.cd.LoadContainer(cctx, id)
	if err != nil {
		return
	}
	task, err := c.Task(cctx, nil)
	if err != nil {
		return
	}
	for {
		select {
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			if err := task.Resize(cctx, uint32(sz.Width), uint32(sz.Height)); err != nil {
				log.G(ctx).WithError(err).WithField("container", id).Debug("resize terminal")
			}
		case <-ctx.Done():
			return
		}
	}
}

// containerSpec returns the pod's container (init, main or ephemeral) named
// name, or nil.
func (w *worker) containerSpec(name string) *corev1.Container {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	if pod == nil {
		return nil
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		if pod.Spec.EphemeralContainers[i].Name == name {
			return ephemeral(&pod.Spec.EphemeralContainers[i])
		}
	}
	return nil
}
