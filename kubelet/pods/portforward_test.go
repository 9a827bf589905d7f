package pods

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeStream is a port-forward stream: the client's bytes come from in, and
// what the pod sends is collected.
type fakeStream struct {
	in *io.PipeReader
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *fakeStream) Read(p []byte) (int, error) { return s.in.Read(p) }
func (s *fakeStream) Close() error               { return s.in.Close() }
func (s *fakeStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestPipe forwards a request to a server that answers once the client has
// finished sending (it reads to EOF: the client's end becomes a half-close)
// and then closes: the answer reaches the client and pipe returns.
func TestPipe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c)
		c.Write(append([]byte("got "), req...))
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pr, pw := io.Pipe()
	s := &fakeStream{in: pr}
	done := make(chan error, 1)
	go func() { done <- pipe(t.Context(), conn, s) }()
	pw.Write([]byte("hello"))
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pipe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pipe did not return after the server closed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := s.b.String(); got != "got hello" {
		t.Errorf("client got %q", got)
	}
}
