package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/containerd/fifo"

	"github.com/feather-edge/feather/kubelet/logs"
)

// eof is the terminal's end-of-file character (VEOF, ^D by default).
const eof = 0x04

// Serve is the helper of one container: it creates the fifos and the socket
// of [PathsFor]'s directory o.Dir, tells its starter it is ready by closing
// ready (after writing the error, when it fails), then copies the container's
// stdout and stderr to the CRI log o.Log until both end (the container's task
// is gone) and writes attach sessions' input to the container's stdin (see
// the package's documentation). Then it closes stdin, the socket and the log
// and removes o.Dir, and returns the log's error.
func Serve(o Options, ready io.WriteCloser) error {
	ps := pathsIn(o.Dir)
	fail := func(err error) error {
		_, _ = io.WriteString(ready, err.Error())
		_ = ready.Close()
		_ = os.RemoveAll(o.Dir)
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fail(fmt.Errorf("create %s: %w", o.Dir, err))
	}
	f, err := logs.OpenRotating(o.Log, o.Rotation)
	if err != nil {
		return fail(err)
	}
	// The opens happen in the background: each meets the shim's opposite
	// open when the task is created. OpenTimeout cancels those still
	// waiting then; it does nothing to opened fifos.
	timeout := o.OpenTimeout
	if timeout <= 0 {
		timeout = DefaultOpenTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	outs := map[logs.StreamType]string{logs.Stdout: ps.Stdout}
	if !o.TTY {
		outs[logs.Stderr] = ps.Stderr
	}
	readers := map[logs.StreamType]io.ReadCloser{}
	for s, path := range outs {
		r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
		if err != nil {
			_ = f.Close()
			return fail(fmt.Errorf("open %s: %w", path, err))
		}
		readers[s] = r
	}
	in, err := fifo.OpenFifo(ctx, ps.Stdin, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		_ = f.Close()
		return fail(fmt.Errorf("open %s: %w", ps.Stdin, err))
	}
	_ = os.Remove(ps.Socket)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: ps.Socket, Net: "unix"})
	if err != nil {
		_ = f.Close()
		return fail(fmt.Errorf("listen on %s: %w", ps.Socket, err))
	}
	_ = ready.Close()

	h := &stdin{w: in, tty: o.TTY, once: o.StdinOnce}
	go h.serve(l)
	var wg sync.WaitGroup
	for s, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := f.Stream(s)
			_, _ = io.Copy(w, r)
			_ = w.Close()
			_ = r.Close()
		}()
	}
	wg.Wait()
	_ = l.Close()
	err = f.Close()
	_ = os.RemoveAll(o.Dir)
	h.close() // last: a session takes this as the log being complete
	return err
}

// The first byte of a connection says what it is.
const (
	kindInput  = 'i' // an attach session with input
	kindOutput = 'o' // an attach session without input: it only waits
)

// stdin is the container's stdin, shared by the attach sessions.
type stdin struct {
	mu     sync.Mutex
	w      io.WriteCloser
	tty    bool
	once   bool // stdinOnce
	used   bool // a session took the input (stdinOnce: no later one does)
	closed bool // stdin is closed
	ended  bool // the helper is ending: no more sessions
	conns  map[*net.UnixConn]struct{}
}

// serve runs one session for each connection to l until l is closed.
func (h *stdin) serve(l *net.UnixListener) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		h.mu.Lock()
		if h.ended {
			h.mu.Unlock()
			_ = c.Close()
			continue
		}
		if h.conns == nil {
			h.conns = map[*net.UnixConn]struct{}{}
		}
		h.conns[c] = struct{}{}
		h.mu.Unlock()
		go h.session(c)
	}
}

// session copies what c sends to stdin until c's input ends; with
// stdinOnce it then ends stdin. A session that gets no input (it asked for
// none, or a stdinOnce container's input was taken) has what it sends
// dropped. The connection of a session with input to a stdinOnce container
// stays open until the helper ends (close), since its end tells the
// session, which goes on after its input, that the log is complete; any
// other session ends when its input does (the agent ends it then, or has
// gone), and its connection is closed at once.
func (h *stdin) session(c *net.UnixConn) {
	var kind [1]byte
	if _, err := io.ReadFull(c, kind[:]); err != nil {
		h.forget(c)
		return
	}
	h.mu.Lock()
	input := kind[0] == kindInput && !h.closed && !(h.once && h.used)
	if input {
		h.used = true
	}
	h.mu.Unlock()
	if !input {
		_, _ = io.Copy(io.Discard, c)
		if !(h.once && kind[0] == kindInput) {
			h.forget(c)
		}
		return
	}
	_, _ = io.Copy(h.w, c)
	if !h.once {
		h.forget(c)
		return
	}
	if h.tty {
		_, _ = h.w.Write([]byte{eof})
		return
	}
	h.closeStdin()
}

// forget closes the connection of a session that has ended.
func (h *stdin) forget(c *net.UnixConn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	_ = c.Close()
}

func (h *stdin) closeStdin() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		_ = h.w.Close()
	}
}

// close closes stdin and every session's connection.
func (h *stdin) close() {
	h.closeStdin()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	for c := range h.conns {
		_ = c.Close()
	}
	h.conns = nil
}

// Main runs [Serve] with the arguments of [Options.Args], the ready pipe on
// fd 3, and returns the exit code: the body of `feather-cri-log stdio …`.
func Main(args []string) int {
	o, err := ParseArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdio helper:", err)
		fmt.Fprintln(os.Stderr, "usage: feather-cri-log stdio dir DIR cri-log PATH [max-size BYTES max-files N] [tty BOOL] [stdin-once BOOL] (started by the agent, with fd 3 to close once ready)")
		return 2
	}
	if err := Serve(o, os.NewFile(3, "ready")); err != nil {
		fmt.Fprintln(os.Stderr, "stdio helper:", err)
		return 1
	}
	return 0
}
