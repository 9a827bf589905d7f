package qmp

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/internal/prereq"
)

// startQEMU starts a guestless QEMU with a QMP socket and returns the socket
// path and a function that waits (up to timeout) for the process to exit and
// returns its exit error. The process is killed and reaped in Cleanup if it is
// still running.
func startQEMU(t *testing.T) (sock string, wait func(timeout time.Duration) (exited bool, err error)) {
	t.Helper()
	bin := prereq.Program(t, "qemu-system-x86_64", "apt-get install qemu-system-x86")
	sock = filepath.Join(t.TempDir(), "qmp.sock")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-M", "none", "-accel", "tcg", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	wait = func(timeout time.Duration) (bool, error) {
		select {
		case <-done:
			return true, waitErr
		case <-time.After(timeout):
			return false, nil
		}
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		if ok, _ := wait(10 * time.Second); !ok {
			t.Errorf("qemu pid %d not reaped", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("qemu stderr: %s", stderr.String())
		}
	})
	return sock, wait
}

func TestQEMU(t *testing.T) {
	sock, wait := startQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })

	wantStatus := func(running bool, status string) {
		t.Helper()
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if s.Running != running || s.Status != status {
			t.Fatalf("Status = %+v, want running=%v status=%s", s, running, status)
		}
	}

	wantStatus(true, "running")

	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitEvent(t, c.Events(), "STOP", 10*time.Second)
	wantStatus(false, "paused")

	if err := c.Cont(ctx); err != nil {
		t.Fatalf("Cont: %v", err)
	}
	waitEvent(t, c.Events(), "RESUME", 10*time.Second)
	wantStatus(true, "running")

	if _, err := c.Execute(ctx, "no-such-command", nil); err == nil {
		t.Error("unknown command: want an error")
	} else if qe := (*Error)(nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" || !errdefs.IsNotImplemented(err) {
		t.Errorf("unknown command: err = %v, want class CommandNotFound (not implemented)", err)
	}

	if err := c.Quit(ctx); err != nil {
		t.Fatalf("Quit: %v", err)
	}
	if ok, err := wait(10 * time.Second); !ok {
		t.Fatal("qemu did not exit after quit")
	} else if err != nil {
		t.Errorf("qemu exited with %v, want 0", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("client not closed after qemu exited")
	}
	if _, err := c.Status(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Status after exit: err = %v, want ErrClosed", err)
	}
}
