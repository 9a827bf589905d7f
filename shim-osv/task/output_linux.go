package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
)

// loggerGrace is how long a binary logger may take to exit after its pipes
// close before it gets SIGKILL, as containerd-shim-runc-v2 allows.
const loggerGrace = 5 * time.Second

// openOutputs opens where containerd wants the task's stdout and stderr: a
// FIFO path (ctr, CRI), a file:// URI, or a binary:// (binary-v2://) logger;
// "" means no stream. A logger URI is taken from stdout and serves both
// streams, as in containerd-shim-runc-v2. On error nothing stays open.
func openOutputs(ctx context.Context, id, stdout, stderr string) (io.WriteCloser, io.WriteCloser, error) {
	if u, err := url.Parse(stdout); err == nil && (u.Scheme == "binary" || u.Scheme == "binary-v2") {
		return startLogger(ctx, id, u)
	}
	out, err := openOutput(ctx, stdout)
	if err != nil {
		return nil, nil, fmt.Errorf("stdout: %w", err)
	}
	serr, err := openOutput(ctx, stderr)
	if err != nil {
		if out != nil {
			out.Close()
		}
		return nil, nil, fmt.Errorf("stderr: %w", err)
	}
	return out, serr, nil
}

// openOutput opens one FIFO or file:// stream.
func openOutput(ctx context.Context, uri string) (io.WriteCloser, error) {
	if uri == "" {
		return nil, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", uri, errdefs.ErrInvalidArgument)
	}
	switch u.Scheme {
	case "", "fifo":
		// O_RDWR would never block, but then the reader would never see
		// EOF; containerd opens its end before Create, so O_WRONLY is fine.
		// With O_NONBLOCK the fifo opens in the background, and is closed
		// if ctx ends first: ctx is the Create call's, which ends when Create
		// returns — on a busy host before that open, so that every write of
		// the VM's output failed (a `ctr run` with exit 0 and no output). The
		// output lives as long as the task: not cancelled with the call.
		return fifo.OpenFifo(context.WithoutCancel(ctx), u.Path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	case "file":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, err
		}
		return os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	default:
		return nil, fmt.Errorf("log URI scheme %q (want a FIFO path, file://, binary:// or binary-v2://): %w", u.Scheme, errdefs.ErrNotImplemented)
	}
}

// startLogger runs a containerd logging binary as containerd's shims do:
// argv = the URI's path plus its query as "key value" pairs, environment
// CONTAINER_ID and CONTAINER_NAMESPACE, fd 3 = stdout, fd 4 = stderr, fd 5 =
// a pipe the logger closes (binary) or writes a byte to (binary-v2) once it
// is ready. It returns the write ends of fd 3 and 4; the logger sees EOF when
// both are closed and then has loggerGrace to exit.
//
// Written here rather than imported: containerd's version lives in the runc
// shim's process package, which would link go-runc into this shim.
func startLogger(ctx context.Context, id string, u *url.URL) (_, _ io.WriteCloser, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, nil, err
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, nil, err
	}
	readyR, readyW, err := pipe()
	if err != nil {
		return nil, nil, err
	}
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = []string{"CONTAINER_ID=" + id, "CONTAINER_NAMESPACE=" + ns}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start logging binary %s: %w", u.Path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	readyW.Close()
	b := make([]byte, 1)
	n, err := readyR.Read(b)
	if (err != nil && !errors.Is(err, io.EOF)) || (u.Scheme == "binary-v2" && n == 0) {
		_ = cmd.Process.Kill()
		return nil, nil, fmt.Errorf("logging binary %s did not become ready (it may have exited): %w", u.Path, errdefs.ErrFailedPrecondition)
	}
	files = []*os.File{outR, errR, readyR} // ours to close; the write ends go to the caller
	l := &logger{cmd: cmd, exited: exited, open: 2, log: log.G(ctx).WithField("logger", u.Path)}
	return &loggerPipe{File: outW, l: l}, &loggerPipe{File: errW, l: l}, nil
}

// logger is a running logging binary fed by two pipes.
type logger struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *log.Entry

	mu   sync.Mutex
	open int // pipes not yet closed
}

// closed notes that one pipe closed; after the last it gives the logger its
// grace to drain and exit, then kills it.
func (l *logger) closed() {
	l.mu.Lock()
	l.open--
	last := l.open == 0
	l.mu.Unlock()
	if !last {
		return
	}
	go func() {
		select {
		case <-l.exited:
		case <-time.After(loggerGrace):
			l.log.Warn("logging binary did not exit after its pipes closed; killing it")
			_ = l.cmd.Process.Kill()
		}
	}()
}

// loggerPipe is the write end of one of a logger's pipes.
type loggerPipe struct {
	*os.File
	l    *logger
	once sync.Once
}

// Close closes the pipe, once.
func (p *loggerPipe) Close() error {
	err := os.ErrClosed
	p.once.Do(func() {
		err = p.File.Close()
		p.l.closed()
	})
	return err
}
