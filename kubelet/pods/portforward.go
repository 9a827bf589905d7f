package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	vkerrdefs "github.com/virtual-kubelet/virtual-kubelet/errdefs"
)

// portForwardDialTimeout bounds the connection to the pod's port.
const portForwardDialTimeout = 10 * time.Second

// PortForward connects stream to port of pod namespace/name and copies
// between them until either side ends, as kubelet's port-forward does
// (kubectl port-forward, one call per connection). It closes stream.
//
// Where it connects: a container pod's own localhost (127.0.0.1, then ::1),
// from inside its network namespace, as kubelet does, so that a server bound
// to localhost is reached too; a pod in which a unikernel runs, its pod IP:
// the VM owns that address (its frames go to the VM, not to the namespace's
// loopback), and a unikernel's program listens there; a hostNetwork pod,
// the node's localhost.
func (p *Provider) PortForward(ctx context.Context, namespace, name string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	if port <= 0 || port > 65535 {
		return vkerrdefs.InvalidInputf("invalid port %d", port)
	}
	w := p.find(namespace, name)
	if w == nil {
		return vkerrdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	conn, err := w.dialPort(ctx, int(port))
	if err != nil {
		return err
	}
	defer conn.Close()
	w.log.WithField("port", port).WithField("to", conn.RemoteAddr().String()).Debug("port-forward connected")
	return pipe(ctx, conn, stream)
}

// dialPort connects to port of the pod; see PortForward.
func (w *worker) dialPort(ctx context.Context, port int) (net.Conn, error) {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	if pod == nil {
		return nil, vkerrdefs.NotFoundf("pod %s not yet adopted", w.key())
	}
	ctx, cancel := context.WithTimeout(ctx, portForwardDialTimeout)
	defer cancel()
	p := strconv.Itoa(port)
	if pod.Spec.HostNetwork {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", p))
		if err != nil {
			return nil, fmt.Errorf("failed to connect to localhost:%d of host-network pod %s: %w", port, w.key(), err)
		}
		return c, nil
	}
	insts, err := w.p.instances(w.p.ctx(ctx), w.uid, nil)
	if err != nil {
		return nil, fmt.Errorf("list containers of pod %s: %w", w.key(), err)
	}
	running := false
	for _, in := range insts {
		if !in.Running {
			continue
		}
		running = true
		if w.p.isUnikernel(in) {
			ips := w.ips()
			if len(ips) == 0 {
				return nil, fmt.Errorf("pod %s has no IP yet: %w", w.key(), errdefs.ErrFailedPrecondition)
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ips[0], p))
			if err != nil {
				return nil, fmt.Errorf("failed to connect to port %d of unikernel %s of pod %s at %s: %w", port, in.Name, w.key(), ips[0], err)
			}
			return c, nil
		}
	}
	if !running {
		return nil, fmt.Errorf("pod %s has no running container: %w", w.key(), errdefs.ErrFailedPrecondition)
	}
	uid := string(w.uid)
	c, err := w.p.net.Dial(ctx, uid, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err != nil {
		c6, err6 := w.p.net.Dial(ctx, uid, "tcp6", net.JoinHostPort("::1", p))
		if err6 != nil {
			return nil, fmt.Errorf("failed to connect to localhost:%d inside the network namespace of pod %s: %w", port, w.key(), err)
		}
		c = c6
	}
	return c, nil
}

// pipe copies between conn and stream until the pod's side ends (or ctx
// does): what the client sends goes to the pod, its stdin ending in a
// half-close; once the pod's side has ended and what it sent is delivered,
// the forward is over, as containerd's is.
func pipe(ctx context.Context, conn net.Conn, stream io.ReadWriteCloser) error {
	fromPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		fromPod <- err
	}()
	go func() {
		_, _ = io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	select {
	case err := <-fromPod:
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
			return fmt.Errorf("port-forward: %w", err)
		}
		return nil
	case <-ctx.Done():
		return nil
	}
}
