package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// fakeReq is a request as the fake server decodes it.
type fakeReq struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// fakeConn is the server side of one QMP connection.
type fakeConn struct {
	conn net.Conn
	mu   sync.Mutex
}

func (f *fakeConn) send(v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	// Write errors just mean the client went away.
	f.conn.Write(append(b, '\r', '\n'))
}

func (f *fakeConn) reply(req fakeReq, ret any) {
	f.send(map[string]any{"return": ret, "id": req.ID})
}

func (f *fakeConn) event(name string, data any) {
	f.send(map[string]any{
		"event":     name,
		"data":      data,
		"timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 250},
	})
}

// fakeServer serves QMP on a unix socket in a temp dir. It sends the greeting,
// answers qmp_capabilities, and hands every later request to handle (called
// from the connection's goroutine, in order). It returns the socket path.
func fakeServer(t *testing.T, handle func(f *fakeConn, req fakeReq)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveFake(t, l, handle)
	return sock
}

func serveFake(t *testing.T, l net.Listener, handle func(f *fakeConn, req fakeReq)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				f := &fakeConn{conn: conn}
				f.send(map[string]any{"QMP": map[string]any{
					"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}},
					"capabilities": []string{"oob"},
				}})
				dec := json.NewDecoder(bufio.NewReader(conn))
				capsDone := false
				for {
					var req fakeReq
					if err := dec.Decode(&req); err != nil {
						return
					}
					if !capsDone {
						if req.Execute != "qmp_capabilities" {
							t.Errorf("first command = %q, want qmp_capabilities", req.Execute)
							return
						}
						capsDone = true
						f.reply(req, struct{}{})
						continue
					}
					handle(f, req)
				}
			}()
		}
	}()
}

func dialT(t *testing.T, sock string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitEvent reads events until one named name arrives.
func waitEvent(t *testing.T, events <-chan Event, name string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events closed while waiting for %s", name)
			}
			if ev.Name == name {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("no %s event within %v", name, timeout)
		}
	}
}

func TestExecute(t *testing.T) {
	for _, tc := range []struct {
		name      string
		command   string
		args      any
		handle    func(f *fakeConn, req fakeReq)
		want      string // JSON of the return value
		wantClass string // QMP error class, if an error is expected
		wantIs    error
		wantEvent string
	}{
		{
			name:    "return",
			command: "query-status",
			handle: func(f *fakeConn, req fakeReq) {
				f.reply(req, map[string]any{"running": true, "status": "running"})
			},
			want: `{"running":true,"status":"running"}`,
		},
		{
			name:    "arguments",
			command: "echo",
			args:    map[string]int{"n": 7},
			handle: func(f *fakeConn, req fakeReq) {
				f.reply(req, req.Arguments)
			},
			want: `{"n":7}`,
		},
		{
			name:    "error",
			command: "device_del",
			handle: func(f *fakeConn, req fakeReq) {
				f.send(map[string]any{"error": map[string]string{"class": "DeviceNotFound", "desc": "no such device"}, "id": req.ID})
			},
			wantClass: "DeviceNotFound",
			wantIs:    errdefs.ErrNotFound,
		},
		{
			name:    "event before return",
			command: "stop",
			handle: func(f *fakeConn, req fakeReq) {
				f.event("STOP", nil)
				f.reply(req, struct{}{})
			},
			want:      `{}`,
			wantEvent: "STOP",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialT(t, fakeServer(t, tc.handle))
			ret, err := c.Execute(testCtx(t), tc.command, tc.args)
			if tc.wantClass != "" {
				var qe *Error
				if !errors.As(err, &qe) || qe.Class != tc.wantClass {
					t.Fatalf("err = %v, want QMP error class %s", err, tc.wantClass)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("err = %v, want it to wrap %v", err, tc.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if string(ret) != tc.want {
				t.Errorf("return = %s, want %s", ret, tc.want)
			}
			if tc.wantEvent != "" {
				// The event was read before the reply, so it is buffered now.
				select {
				case ev := <-c.Events():
					if ev.Name != tc.wantEvent {
						t.Errorf("event = %q, want %q", ev.Name, tc.wantEvent)
					}
					if want := time.Unix(1700000000, 250000); !ev.Timestamp.Equal(want) {
						t.Errorf("timestamp = %v, want %v", ev.Timestamp, want)
					}
				default:
					t.Errorf("no %s event buffered", tc.wantEvent)
				}
			}
		})
	}
}

// TestConcurrentExecute answers requests in reverse order and checks that each
// caller gets its own reply.
func TestConcurrentExecute(t *testing.T) {
	const n = 16
	var batch []fakeReq
	sock := fakeServer(t, func(f *fakeConn, req fakeReq) {
		batch = append(batch, req)
		if len(batch) < n {
			return
		}
		for i := len(batch) - 1; i >= 0; i-- {
			if i == n/2 {
				f.event("RESUME", nil)
			}
			f.reply(batch[i], batch[i].Arguments)
		}
		batch = nil
	})
	c := dialT(t, sock)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ret, err := c.Execute(ctx, "echo", map[string]int{"n": i})
			if err != nil {
				errs <- err
				return
			}
			if want := fmt.Sprintf(`{"n":%d}`, i); string(ret) != want {
				errs <- fmt.Errorf("call %d got %s, want %s", i, ret, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitEvent(t, c.Events(), "RESUME", 5*time.Second)
}

func TestConnectionDrop(t *testing.T) {
	sock := fakeServer(t, func(f *fakeConn, req fakeReq) {
		switch req.Execute {
		case "hang":
			// no reply
		case "quit":
			f.event("SHUTDOWN", nil)
			f.conn.Close() // QEMU exits before replying
		case "die":
			f.conn.Close()
		}
	})

	t.Run("pending call fails", func(t *testing.T) {
		c := dialT(t, sock)
		ctx := testCtx(t)
		hung := make(chan error, 1)
		go func() {
			_, err := c.Execute(ctx, "hang", nil)
			hung <- err
		}()
		// "die" is written after "hang" only if "hang" was sent first; either
		// way both must fail with ErrClosed.
		if _, err := c.Execute(ctx, "die", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("die: err = %v, want ErrClosed", err)
		}
		if err := <-hung; !errors.Is(err, ErrClosed) {
			t.Errorf("pending hang: err = %v, want ErrClosed", err)
		}
		if _, err := c.Execute(ctx, "query-status", nil); !errors.Is(err, ErrClosed) || !errdefs.IsUnavailable(err) {
			t.Errorf("after drop: err = %v, want ErrClosed (unavailable)", err)
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("Done not closed after drop")
		}
		for range c.Events() { // must be closed, so this ends
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close after drop: %v", err)
		}
	})

	t.Run("quit", func(t *testing.T) {
		c := dialT(t, sock)
		if err := c.Quit(testCtx(t)); err != nil {
			t.Errorf("Quit = %v, want nil when QEMU closes the connection", err)
		}
		waitEvent(t, c.Events(), "SHUTDOWN", 5*time.Second)
	})

	t.Run("close", func(t *testing.T) {
		c := dialT(t, sock)
		ctx := testCtx(t)
		hung := make(chan error, 1)
		go func() {
			_, err := c.Execute(ctx, "hang", nil)
			hung <- err
		}()
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := <-hung; !errors.Is(err, ErrClosed) {
			t.Errorf("pending: err = %v, want ErrClosed", err)
		}
		if err := c.Quit(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("Quit after Close = %v, want ErrClosed", err)
		}
		if _, ok := <-c.Events(); ok {
			t.Error("Events not closed after Close")
		}
	})
}

func TestExecuteContext(t *testing.T) {
	c := dialT(t, fakeServer(t, func(f *fakeConn, req fakeReq) {
		if req.Execute == "ping" {
			f.reply(req, "pong")
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Execute(ctx, "hang", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// The client is still usable; the late reply (none here) is discarded.
	if ret, err := c.Execute(testCtx(t), "ping", nil); err != nil || string(ret) != `"pong"` {
		t.Fatalf("ping after timeout = %s, %v", ret, err)
	}
}

func TestEventsDropOldest(t *testing.T) {
	const extra = 10
	c := dialT(t, fakeServer(t, func(f *fakeConn, req fakeReq) {
		for i := 0; i < EventBuffer+extra; i++ {
			f.event(fmt.Sprintf("E%d", i), nil)
		}
		f.reply(req, struct{}{})
	}))
	if _, err := c.Execute(testCtx(t), "flood", nil); err != nil {
		t.Fatal(err)
	}
	// All events were read before the reply; the oldest ones were dropped.
	ev := <-c.Events()
	if want := fmt.Sprintf("E%d", extra); ev.Name != want {
		t.Errorf("oldest kept event = %s, want %s", ev.Name, want)
	}
	if n := len(c.Events()); n != EventBuffer-1 {
		t.Errorf("buffered = %d, want %d", n, EventBuffer-1)
	}
}

func TestDial(t *testing.T) {
	t.Run("waits for socket", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "late.sock")
		type result struct {
			c   *Client
			err error
		}
		res := make(chan result, 1)
		ctx := testCtx(t)
		go func() {
			c, err := Dial(ctx, sock)
			res <- result{c, err}
		}()
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		serveFake(t, l, func(f *fakeConn, req fakeReq) {})
		r := <-res
		if r.err != nil {
			t.Fatalf("Dial: %v", r.err)
		}
		r.c.Close()
	})

	t.Run("deadline without socket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := Dial(ctx, filepath.Join(t.TempDir(), "missing.sock"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	})

	t.Run("deadline without greeting", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "mute.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := Dial(ctx, sock); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	})
}
