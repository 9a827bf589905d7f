package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// readyTimeout bounds how long Start waits for a helper to be ready.
const readyTimeout = 10 * time.Second

// Helper is a started helper, as its starter (the agent) sees it.
type Helper struct {
	paths Paths
	cmd   *exec.Cmd
}

// Start runs bin (feather-cri-log, or the agent's own binary) as the helper
// of o, in a session of its own so that it outlives the agent, and returns
// once it is ready (its fifos and socket exist) or has failed. A goroutine
// reaps it when it ends while the agent runs; after a restart of the agent
// the helper goes on, reparented, and attach sessions find it by its
// directory. The caller creates the container's task with the helper's
// fifos ([Helper.Paths]), and calls [Helper.Stop] if that fails.
func Start(ctx context.Context, bin string, o Options) (*Helper, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("stdio helper: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdio helper: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(bin, append([]string{Mode}, o.Args()...)...)
	cmd.ExtraFiles = []*os.File{w} // fd 3: closed once ready
	cmd.SysProcAttr = detached()
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		_ = os.RemoveAll(o.Dir)
		return nil, fmt.Errorf("start stdio helper %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	h := &Helper{paths: pathsIn(o.Dir), cmd: cmd}
	deadline := time.Now().Add(readyTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = r.SetReadDeadline(deadline)
	msg, err := io.ReadAll(r)
	switch {
	case err != nil:
		h.Stop()
		return nil, fmt.Errorf("stdio helper of %s not ready: %w", o.Log, err)
	case len(msg) > 0:
		<-exited
		_ = os.RemoveAll(o.Dir)
		return nil, fmt.Errorf("stdio helper of %s: %s", o.Log, msg)
	}
	return h, nil
}

// Paths returns the helper's paths: the container's task takes its fifos
// as its stdio (Stdin, Stdout and, without a terminal, Stderr).
func (h *Helper) Paths() Paths { return h.paths }

// Stop kills the helper and removes its directory, for a task that was never
// created: the helper of a task ends by itself with the task.
func (h *Helper) Stop() {
	_ = h.cmd.Process.Kill()
	_ = os.RemoveAll(h.paths.Dir)
}

// ErrNoHelper is Dial's error for a container without a helper (it does not
// take input, or it has ended).
var ErrNoHelper = errors.New("no stdio helper")

// Dial connects an attach session to the container whose helper has the
// paths ps. With input, what the caller writes goes to the container's
// stdin, and CloseWrite ends the session's input (see the package's
// documentation for what that does); without, what it writes is dropped.
// The helper never writes to the connection. It closes it once it has ended
// (the container's output has ended and is all in the log), so a read that
// returns tells the session that the log is complete — or, for a session
// whose input does not go on into a stdinOnce container, once the session's
// input has ended. The error wraps
// ErrNoHelper when there is no helper (the container does not take input,
// or it has ended).
func Dial(ctx context.Context, ps Paths, input bool) (*net.UnixConn, error) {
	if _, err := os.Stat(ps.Socket); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", ps.Socket, ErrNoHelper)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", ps.Socket)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrNoHelper, err) // it has just ended
		}
		return nil, fmt.Errorf("attach to stdin: %w", err)
	}
	kind := byte(kindOutput)
	if input {
		kind = kindInput
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, fmt.Errorf("attach to stdin: %w", err)
	}
	return c.(*net.UnixConn), nil
}

// RemoveAll removes the helper directory of container id under root (after
// its task is deleted, in case the helper did not).
func RemoveAll(root, id string) error {
	return os.RemoveAll(PathsFor(root, id).Dir)
}
