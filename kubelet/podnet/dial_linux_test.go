package podnet

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/shim-osv/netns"
)

// TestDial reaches a server that listens on the loopback of a pod's
// namespace only, which the agent's own namespace cannot reach.
func TestDial(t *testing.T) {
	prereq.Root(t)
	m := &Manager{Dir: t.TempDir()}
	p, err := m.Ensure("pod-dial")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove("pod-dial") })
	var ln net.Listener
	if err := netns.Do(p, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("from the pod\n"))
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := m.Dial(ctx, "pod-dial", "tcp4", addr)
	if err != nil {
		t.Fatalf("Dial %s in the pod: %v", addr, err)
	}
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(b) != "from the pod\n" {
		t.Errorf("read %q, %v", b, err)
	}
	// The calling goroutine's thread stayed in the agent's namespace.
	if hc, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
		hc.Close()
		t.Errorf("%s answers in the agent's namespace too: the test proves nothing", addr)
	}
	if _, err := m.Dial(ctx, "no-such-pod", "tcp4", addr); !errdefs.IsNotFound(err) {
		t.Errorf("Dial into a pod without a namespace: %v, want not found", err)
	}
}
