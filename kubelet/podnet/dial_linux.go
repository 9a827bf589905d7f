package podnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Dial connects to addr (an IP literal and port: no name is resolved) from
// inside the network namespace of pod uid, as kubelet's port-forward does
// for localhost: the socket is made on a thread that has joined the
// namespace, so it stays in it after the thread has gone back. It blocks
// until connected, ctx ends or the dial fails; a pod without a namespace
// gives an error that errdefs.IsNotFound matches.
func (m *Manager) Dial(ctx context.Context, uid, network, addr string) (net.Conn, error) {
	p := m.Path(uid)
	if !isNS(p) {
		return nil, fmt.Errorf("network namespace of pod %s: %w", uid, errdefs.ErrNotFound)
	}
	target, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("network namespace of pod %s: %w", uid, err)
	}
	defer target.Close()
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("open the agent's network namespace: %w", err)}
			return
		}
		defer origin.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("join network namespace of pod %s: %w", uid, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err := unix.Setns(int(origin.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and ends with this goroutine:
			// no other goroutine runs in the pod's namespace.
			if c != nil {
				c.Close()
			}
			done <- result{err: fmt.Errorf("leave network namespace of pod %s: %w", uid, err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}
