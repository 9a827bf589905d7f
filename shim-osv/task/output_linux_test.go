package task

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOpenOutputOutlivesCall: the stdout fifo opened in a Create call
// keeps working after the call's context ends (it ended here before the
// call, the worst case of a busy host): what the VM writes reaches the
// reader.
func TestOpenOutputOutlivesCall(t *testing.T) {
	// The race between the fifo's open and the context's end is lost only
	// sometimes: many rounds.
	for range 300 {
		outlivesCall(t)
	}
}

func outlivesCall(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stdout")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// The reader is open before Create, as containerd's.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w, err := openOutput(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("hello\n")); err != nil {
		t.Fatalf("write after the call's context ended: %v", err)
	}
	buf := make([]byte, 16)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "hello\n" {
		t.Fatalf("read %q (%v), want hello", buf[:n], err)
	}
}
