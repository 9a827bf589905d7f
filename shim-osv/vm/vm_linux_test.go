package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/shim-osv/qemu"
	"github.com/feather-edge/feather/vmimage"
)

// output is a WriteCloser the VM's console goes to.
type output struct {
	mu     sync.Mutex
	b      bytes.Buffer
	closed bool
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return nil
}

func (o *output) state() (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String(), o.closed
}

// newTestVM creates a VM of a direct-boot image whose QEMU is this test
// binary playing guest (see fakeQEMUEnv).
func newTestVM(t *testing.T, guest string) (*VM, *output) {
	t.Helper()
	return newTestVMAccel(t, guest, qemu.TCG)
}

// newTestVMAccel is newTestVM with accelerator accel ("" to use the
// cached or probed one).
func newTestVMAccel(t *testing.T, guest, accel string) (*VM, *output) {
	t.Helper()
	prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	system := qemu.System
	qemu.System = self
	t.Cleanup(func() { qemu.System = system })
	t.Setenv(fakeQEMUEnv, guest)
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "feather"), 0o755)
	for _, f := range []string{vmimage.DiskPath, vmimage.KernelPath} {
		if err := os.WriteFile(filepath.Join(rootfs, f), make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bundle := t.TempDir()
	out := &output{}
	v, err := Create(context.Background(), Config{ID: "vm1", Bundle: bundle, Rootfs: rootfs, Accel: accel, Stdout: out,
		Spec: &specs.Spec{Process: &specs.Process{Args: []string{"/hello"}, Cwd: "/"}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if st := v.Status(); st == Running || st == Paused {
			v.Kill(context.Background(), syscall.SIGKILL)
			waitExited(t, v)
		}
		if err := v.Delete(context.Background()); err != nil {
			t.Errorf("delete: %v", err)
		}
		if _, err := os.Stat(filepath.Join(bundle, Dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the VM's directory is left: %v", err)
		}
	})
	return v, out
}

func waitExited(t *testing.T, v *VM) {
	t.Helper()
	select {
	case <-v.Exited():
	case <-time.After(10 * time.Second):
		t.Fatalf("vm did not stop; status %s", v.Status())
	}
}

// gone reports whether no process has pid any more (it was reaped).
func gone(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }

// quick runs f and fails the test if it takes longer than a second: what
// the VM's lock must not delay.
func quick(t *testing.T, what string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	if d := time.Since(start); d > time.Second {
		t.Errorf("%s took %v", what, d)
	}
}

// TestVMLifecycle walks a VM through its states with the requests that are
// allowed and refused in each.
func TestVMLifecycle(t *testing.T) {
	ctx := context.Background()
	v, out := newTestVM(t, "run")
	if st := v.Status(); st != Created {
		t.Fatalf("status %s, want created", st)
	}
	for name, err := range map[string]error{"pause": v.Pause(ctx), "resume": v.Resume(ctx)} {
		if !errdefs.IsFailedPrecondition(err) {
			t.Errorf("%s of a created vm: %v, want failed precondition", name, err)
		}
	}
	if err := v.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	pid := v.Pid()
	if st := v.Status(); st != Running || pid == 0 {
		t.Fatalf("status %s, pid %d; want running with QEMU's pid", st, pid)
	}
	if err := v.Start(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: %v, want failed precondition", err)
	}
	if err := v.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete of a running vm: %v, want failed precondition", err)
	}
	if err := v.Resume(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("resume of a running vm: %v, want failed precondition", err)
	}
	if err := v.Pause(ctx); err != nil || v.Status() != Paused {
		t.Fatalf("pause: %v, status %s", err, v.Status())
	}
	if err := v.Pause(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second pause: %v, want failed precondition", err)
	}
	if err := v.Resume(ctx); err != nil || v.Status() != Running {
		t.Fatalf("resume: %v, status %s", err, v.Status())
	}
	if err := v.Kill(ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("kill: %v", err)
	}
	waitExited(t, v)
	if code, _ := v.ExitStatus(); code != 128+int(syscall.SIGTERM) || v.Status() != Stopped {
		t.Errorf("exit status %d, status %s; want %d, stopped", code, v.Status(), 128+syscall.SIGTERM)
	}
	if err := v.Kill(ctx, syscall.SIGKILL); !errdefs.IsNotFound(err) {
		t.Errorf("kill of a stopped vm: %v, want not found", err)
	}
	if err := v.Start(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start of a stopped vm: %v, want failed precondition", err)
	}
	if !gone(pid) {
		t.Errorf("qemu %d still there", pid)
	}
	if got, closed := out.state(); !strings.Contains(got, "hello\n") || strings.Contains(got, "\r") || !closed {
		t.Errorf("stdout %q (closed %v): want the program's output with LF line ends, closed", got, closed)
	}
}

// TestVMExitStatus: the program's own status is the VM's.
func TestVMExitStatus(t *testing.T) {
	v, _ := newTestVM(t, "exit3")
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitExited(t, v)
	if code, at := v.ExitStatus(); code != 3 || at.IsZero() {
		t.Errorf("exit status %d at %v, want 3", code, at)
	}
}

// TestVMHaltedAfterEnd: a guest whose console reported the program's end
// (a crash) but that keeps running is stopped after EndGrace, with the
// crash's exit status and reason.
func TestVMHaltedAfterEnd(t *testing.T) {
	grace := EndGrace
	EndGrace = 300 * time.Millisecond
	t.Cleanup(func() { EndGrace = grace })
	var stderr output
	v, _ := newTestVM(t, "halt")
	v.cfg.Stderr = &stderr
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitExited(t, v)
	msg, _ := stderr.state()
	if code, _ := v.ExitStatus(); code != 134 || !strings.Contains(msg, "the program crashed") {
		t.Errorf("exit status %d, stderr %q; want 134 and the crash", code, msg)
	}
}

// TestVMKillDuringBoot: while a VM boots (its QEMU never answers), State,
// Pids and Kill answer at once; the Kill ends the boot, Start fails as
// aborted, QEMU is gone and the status is 128+SIGKILL.
func TestVMKillDuringBoot(t *testing.T) {
	ctx := context.Background()
	v, out := newTestVM(t, "slowboot")
	started := make(chan error, 1)
	go func() { started <- v.Start(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for v.Pid() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pid := v.Pid()
	if pid == 0 {
		t.Fatal("qemu did not start")
	}
	quick(t, "status during boot", func() {
		if st := v.Status(); st != Starting {
			t.Errorf("status %s, want starting", st)
		}
	})
	quick(t, "pids during boot", func() {
		if pids := v.Pids(); len(pids) != 1 || pids[0] != pid {
			t.Errorf("pids %v, want [%d]", pids, pid)
		}
	})
	quick(t, "kill during boot", func() {
		if err := v.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Errorf("kill: %v", err)
		}
	})
	select {
	case err := <-started:
		if !errdefs.IsAborted(err) {
			t.Errorf("start = %v, want aborted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("start did not end after kill")
	}
	waitExited(t, v)
	if code, _ := v.ExitStatus(); code != 128+int(syscall.SIGKILL) || v.Status() != Stopped {
		t.Errorf("exit status %d, status %s; want %d, stopped", code, v.Status(), 128+syscall.SIGKILL)
	}
	if !gone(pid) {
		t.Errorf("qemu %d still there", pid)
	}
	if _, closed := out.state(); !closed {
		t.Error("stdout not closed")
	}
}

// TestVMNeverStarted: a created VM that is killed or deleted ends without
// running, as killed; a boot that fails leaves it stopped with status 1.
func TestVMNeverStarted(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		do   func(v *VM) error
		code int
	}{
		{"killed", func(v *VM) error { return v.Kill(ctx, syscall.SIGTERM) }, 128 + int(syscall.SIGTERM)},
		{"deleted", func(v *VM) error { return v.Delete(ctx) }, 128 + int(syscall.SIGKILL)},
		{"no qemu", func(v *VM) error {
			qemu.System = filepath.Join(t.TempDir(), "qemu-system-x86_64")
			if err := v.Start(ctx); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "qemu-system-x86") {
				t.Errorf("start = %v, want failed precondition naming the package", err)
			}
			return nil
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, out := newTestVM(t, "run")
			if err := tc.do(v); err != nil {
				t.Fatal(err)
			}
			waitExited(t, v)
			if code, _ := v.ExitStatus(); code != tc.code || v.Status() != Stopped {
				t.Errorf("exit status %d, status %s; want %d, stopped", code, v.Status(), tc.code)
			}
			if err := v.Start(ctx); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("start afterwards: %v, want failed precondition", err)
			}
			if _, closed := out.state(); !closed {
				t.Error("stdout not closed")
			}
		})
	}
}

// TestVMBootRecorded checks BootFile: written once the guest's program
// started, with the boot mode, the accelerator and a duration.
func TestVMBootRecorded(t *testing.T) {
	v, _ := newTestVM(t, "run")
	path := filepath.Join(v.dir, BootFile)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s before start: %v", BootFile, err)
	}
	start := time.Now()
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	var b Boot
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile(path)
		if err == nil {
			if err := json.Unmarshal(data, &b); err != nil {
				t.Fatalf("%s: %v", BootFile, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s 10 s after start: %v", BootFile, err)
		}
	}
	if b.Mode != BootDirect || b.Accel != qemu.TCG || b.Seconds <= 0 || b.Seconds > time.Since(start).Seconds() {
		t.Errorf("boot %+v: want direct, tcg, between 0 and %.2f s", b, time.Since(start).Seconds())
	}
}

// TestVMKVMAbortFallsBack: a QEMU that dies at once under KVM (the probe
// passed, -cpu host did not) is booted again under TCG, which is
// remembered.
func TestVMKVMAbortFallsBack(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "accel")
	if err := os.WriteFile(cache, []byte(qemu.KVM), 0o644); err != nil {
		t.Fatal(err)
	}
	old := qemu.AccelCache
	qemu.AccelCache = cache
	t.Cleanup(func() { qemu.AccelCache = old })
	v, out := newTestVMAccel(t, "kvmabort", "")
	start := time.Now()
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("start took %v: the dead QEMU's socket was waited for", d)
	}
	if b, _ := os.ReadFile(cache); string(b) != qemu.TCG && strings.TrimSpace(string(b)) != qemu.TCG {
		t.Errorf("accelerator cache %q, want tcg", b)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got, _ := out.state(); strings.Contains(got, "hello") {
			break
		}
		if time.Now().After(deadline) {
			got, _ := out.state()
			t.Fatalf("the guest under TCG printed %q", got)
		}
	}
}
