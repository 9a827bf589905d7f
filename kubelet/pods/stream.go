package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	vkerrdefs "github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	utilexec "k8s.io/utils/exec"

	"github.com/feather-edge/feather/kubelet/logs"
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

// AttachToContainer shows a running container's output from now on, for
// kubectl attach, until the container exits or the client goes: its stdout
// and stderr as they reach the container's log (the logger owns the
// container's output, and stdin is not connected, so input is refused).
func (p *Provider) AttachToContainer(ctx context.Context, namespace, name, container string, attach api.AttachIO) error {
	if err := p.CheckStream(ctx, namespace, name, container, false); err != nil {
		return err
	}
	w := p.find(namespace, name)
	if w == nil {
		return vkerrdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	if attach.Stdin() != nil {
		in, err := w.runningInstance(ctx, container)
		if err == nil && p.isUnikernel(in) {
			return ErrUnikernelAttach
		}
		return fmt.Errorf("attach to container %q: stdin is not connected to containers on this node; use kubectl exec -i: %w", container, errdefs.ErrNotImplemented)
	}
	path, done, err := w.logFor(ctx, container, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	follow := func(s logs.StreamType, out io.Writer) {
		defer wg.Done()
		err := logs.Read(ctx, path, logs.Options{Tail: 0, Follow: true, Stream: s}, done, out)
		if err != nil && !errors.Is(err, context.Canceled) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			cancel()
		}
	}
	outs := map[logs.StreamType]io.Writer{}
	if out := attach.Stdout(); out != nil {
		outs[logs.Stdout] = out
	}
	if e := attach.Stderr(); e != nil {
		outs[logs.Stderr] = e
	}
	if attach.TTY() && outs[logs.Stdout] != nil {
		// One terminal carries both streams.
		delete(outs, logs.Stderr)
		wg.Add(1)
		go follow("", outs[logs.Stdout])
	} else {
		for s, out := range outs {
			wg.Add(1)
			go follow(s, out)
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}
