// Package qmp is a small client for the QEMU Machine Protocol (QMP), the JSON
// control channel of a running qemu-system-* process.
//
// The shim starts QEMU with a QMP server on a unix socket, for example
//
//	-qmp unix:PATH,server=on,wait=off
//	-chardev socket,id=qmp,path=PATH,server=on,wait=off -mon chardev=qmp,mode=control
//
// and drives it with a Client: Dial, then Execute (or the convenience methods
// Stop, Cont, SystemPowerdown, Quit, Status), while asynchronous events (STOP,
// RESUME, SHUTDOWN, …) arrive on Events. A QMP server serves one client at a
// time: a second Dial to the same socket connects but gets no greeting until
// the first client has closed, so it blocks until its context is done.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// ErrClosed is returned (wrapped) by every call on a Client whose connection is
// gone: Close was called, or QEMU closed the socket (usually because it
// exited). It wraps errdefs.ErrUnavailable.
var ErrClosed = fmt.Errorf("qmp connection closed: %w", errdefs.ErrUnavailable)

// EventBuffer is the capacity of the Events channel. When it is full, the
// oldest buffered event is dropped to make room for the newest one.
const EventBuffer = 64

// dialRetryInterval is how long Dial waits between attempts to connect.
const dialRetryInterval = 20 * time.Millisecond

// Event is an asynchronous QMP event such as STOP, RESUME or SHUTDOWN.
type Event struct {
	// Name is the event name, e.g. "STOP".
	Name string
	// Data is the event's "data" member, nil when it has none.
	Data json.RawMessage
	// Timestamp is when QEMU emitted the event (QEMU's host clock).
	Timestamp time.Time
}

// Error is an error reply from QEMU: {"error": {"class": …, "desc": …}}.
// Errors of some classes unwrap to errdefs sentinels (CommandNotFound →
// ErrNotImplemented, DeviceNotFound → ErrNotFound, DeviceNotActive →
// ErrFailedPrecondition).
type Error struct {
	// Class is QMP's error class, e.g. "GenericError" or "CommandNotFound".
	Class string `json:"class"`
	// Desc is QEMU's human-readable description.
	Desc string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("qmp error %s: %s", e.Class, e.Desc) }

// Unwrap maps well-known QMP error classes to errdefs sentinels; nil otherwise.
func (e *Error) Unwrap() error {
	switch e.Class {
	case "CommandNotFound":
		return errdefs.ErrNotImplemented
	case "DeviceNotFound":
		return errdefs.ErrNotFound
	case "DeviceNotActive":
		return errdefs.ErrFailedPrecondition
	}
	return nil
}

// Status is the result of query-status.
type Status struct {
	// Running reports whether the guest's vCPUs are running.
	Running bool `json:"running"`
	// Status is QEMU's RunState, e.g. "running", "paused", "shutdown",
	// "inmigrate", "prelaunch", "guest-panicked".
	Status string `json:"status"`
}

// Client is a connection to one QMP server. Its methods are safe for
// concurrent use. The caller owns it and must Close it.
type Client struct {
	conn   net.Conn
	dec    *json.Decoder
	events chan Event
	log    *log.Entry

	nextID atomic.Uint64
	// wmu serialises writes; a channel so that waiting honours ctx.
	wmu chan struct{}

	mu      sync.Mutex
	pending map[uint64]chan response
	closed  bool
	err     error // why the connection is gone; wraps ErrClosed

	done      chan struct{} // closed when the reader has exited
	closeOnce sync.Once
	closeErr  error
	// userClosed is set by Close; it tells Quit that ErrClosed is not
	// QEMU exiting.
	userClosed atomic.Bool
}

type response struct {
	ret json.RawMessage
	err error
}

// message is any JSON object QEMU sends.
type message struct {
	QMP       json.RawMessage `json:"QMP"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	ID     json.RawMessage `json:"id"`
}

type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// Dial connects to the QMP unix socket at socketPath, reads QEMU's greeting
// and enters command mode (qmp_capabilities). It blocks until that is done or
// ctx is done; while the socket does not exist or refuses connections (QEMU
// has just been started) it keeps retrying, so ctx should carry a deadline.
// The caller must Close the returned Client.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	conn, err := dialRetry(ctx, socketPath)
	if err != nil {
		return nil, fmt.Errorf("dial qmp %s: %w", socketPath, err)
	}
	c := &Client{
		conn:    conn,
		dec:     json.NewDecoder(conn),
		events:  make(chan Event, EventBuffer),
		log:     log.G(ctx).WithField("qmp", socketPath),
		wmu:     make(chan struct{}, 1),
		pending: make(map[uint64]chan response),
		done:    make(chan struct{}),
	}
	if err := c.readGreeting(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: greeting: %w", socketPath, err)
	}
	go c.readLoop()
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp %s: %w", socketPath, err)
	}
	return c, nil
}

func dialRetry(ctx context.Context, socketPath string) (net.Conn, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", socketPath)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		t := time.NewTimer(dialRetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}

// readGreeting reads the {"QMP": …} banner, honouring ctx.
func (c *Client) readGreeting(ctx context.Context) error {
	defer interruptOnDone(ctx, c.conn.SetReadDeadline)()
	var m message
	if err := c.dec.Decode(&m); err != nil {
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		return err
	}
	if m.QMP == nil {
		return fmt.Errorf("unexpected first message (not a QMP greeting): %w", errdefs.ErrFailedPrecondition)
	}
	return nil
}

// interruptOnDone makes a blocked read or write (whose deadline setDeadline
// sets) fail as soon as ctx is done. The returned stop function must be called
// when the operation has returned; it clears the deadline again.
func interruptOnDone(ctx context.Context, setDeadline func(time.Time) error) (stop func()) {
	fired := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		setDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stopAfter() {
			<-fired // it ran or is running; let it finish before clearing
			setDeadline(time.Time{})
		}
	}
}

// readLoop is the only reader of the connection. It dispatches replies to
// their callers and events to the Events channel, and on a read error marks
// the client closed, fails pending calls and closes Events.
func (c *Client) readLoop() {
	defer close(c.done)
	defer close(c.events)
	var cause error
	for {
		var m message
		if err := c.dec.Decode(&m); err != nil {
			cause = err
			break
		}
		switch {
		case m.Event != "":
			c.deliver(m)
		case m.ID != nil:
			var id uint64
			if err := json.Unmarshal(m.ID, &id); err != nil {
				c.log.WithError(err).Warnf("qmp: reply with foreign id %s", m.ID)
				continue
			}
			var r response
			if m.Error != nil {
				r.err = m.Error
			} else {
				r.ret = m.Return
			}
			c.mu.Lock()
			ch, ok := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if ok {
				ch <- r // buffered, never blocks
			}
		default:
			// A reply without id answers a request QEMU could not parse;
			// we never send one, so just log it.
			c.log.Warnf("qmp: unexpected message without id (error %v)", m.Error)
		}
	}

	c.mu.Lock()
	c.closed = true
	if c.err == nil {
		c.err = fmt.Errorf("%w (%v)", ErrClosed, cause)
	}
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, ch := range pending {
		ch <- response{err: c.err}
	}
	c.conn.Close()
}

// deliver puts an event on the Events channel, dropping the oldest buffered
// event when the channel is full. Only readLoop calls it.
func (c *Client) deliver(m message) {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Timestamp = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	for {
		select {
		case c.events <- ev:
			return
		default:
		}
		select {
		case old := <-c.events:
			c.log.Debugf("qmp: event buffer full, dropped %s", old.Name)
		default:
		}
	}
}

// Events returns the channel on which asynchronous QMP events are delivered,
// in the order QEMU sent them. It is the same channel on every call. It holds
// EventBuffer events; when nobody drains it and it is full, the oldest event
// is dropped, so the reader never blocks. It is closed once the connection is
// gone (Close, or QEMU exited).
func (c *Client) Events() <-chan Event { return c.events }

// Done returns a channel that is closed once the connection is gone (Close was
// called, or QEMU closed it).
func (c *Client) Done() <-chan struct{} { return c.done }

// Execute sends command with args (marshalled as the "arguments" object; nil
// for none) and blocks until QEMU's reply, ctx is done or the connection is
// gone. It returns the "return" value; an {"error": …} reply is returned as a
// *Error. A lost connection gives an error wrapping ErrClosed. If ctx ends
// first, the reply (if any) is discarded and the command may still take
// effect; if it ends while the request is still being written (QEMU is not
// reading), the connection is closed, since half a request may be on the
// wire. Safe for concurrent use.
func (c *Client) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	id := c.nextID.Add(1)
	b, err := json.Marshal(request{Execute: command, Arguments: args, ID: id})
	if err != nil {
		return nil, fmt.Errorf("qmp %s: marshal arguments: %w: %w", command, errdefs.ErrInvalidArgument, err)
	}
	b = append(b, '\n')

	ch := make(chan response, 1)
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.write(ctx, b); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}

	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, r.err)
		}
		return r.ret, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	if c.pending != nil {
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// write sends one request. A write that fails (or is cut short by ctx) may
// have left half a message on the wire, so it closes the connection.
func (c *Client) write(ctx context.Context, b []byte) error {
	select {
	case c.wmu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.closedErr()
	}
	defer func() { <-c.wmu }()

	stop := interruptOnDone(ctx, c.conn.SetWriteDeadline)
	_, err := c.conn.Write(b)
	stop()
	if err != nil {
		c.shutdown(fmt.Errorf("%w (write: %v)", ErrClosed, err))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.closedErr()
	}
	return nil
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// shutdown records why the connection is going away and closes it; readLoop
// then fails pending calls with that reason.
func (c *Client) shutdown(reason error) error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = reason
		}
		c.mu.Unlock()
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// Close closes the connection (QEMU keeps running) and waits for the reader to
// finish: pending and later calls fail with an error wrapping ErrClosed, and
// Events is closed. It is idempotent and safe to call concurrently with other
// methods.
func (c *Client) Close() error {
	c.userClosed.Store(true)
	err := c.shutdown(ErrClosed)
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Stop pauses the guest's vCPUs (QMP "stop"); QEMU emits a STOP event.
func (c *Client) Stop(ctx context.Context) error {
	_, err := c.Execute(ctx, "stop", nil)
	return err
}

// Cont resumes a paused guest (QMP "cont"); QEMU emits a RESUME event.
func (c *Client) Cont(ctx context.Context) error {
	_, err := c.Execute(ctx, "cont", nil)
	return err
}

// SystemPowerdown asks the guest to power off (ACPI power button, QMP
// "system_powerdown"). It returns once QEMU has injected the request, not when
// the guest is off; a guest without ACPI support ignores it.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	_, err := c.Execute(ctx, "system_powerdown", nil)
	return err
}

// Quit makes QEMU exit immediately (QMP "quit"). It returns nil both when QEMU
// acknowledged the command and when QEMU closed the connection (before or
// instead of replying) because it exited; after Close it fails with
// ErrClosed. It does not wait for the process; its owner must reap it.
func (c *Client) Quit(ctx context.Context) error {
	_, err := c.Execute(ctx, "quit", nil)
	if err != nil && errors.Is(err, ErrClosed) && !c.userClosed.Load() {
		return nil
	}
	return err
}

// Status returns the VM's run state (QMP "query-status").
func (c *Client) Status(ctx context.Context) (Status, error) {
	ret, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return Status{}, err
	}
	var s Status
	if err := json.Unmarshal(ret, &s); err != nil {
		return Status{}, fmt.Errorf("qmp query-status: decode %s: %w", ret, err)
	}
	return s, nil
}
