package harness

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/feather-edge/feather/test/leak"
)

// Env is one test's set of running components under one temporary tree.
type Env struct {
	// Dir is the tree every component of this Env lives in; nothing outside
	// it is written, except what containerd's shims keep in /run.
	Dir string

	t      T
	mu     sync.Mutex
	stops  []func() error // run in reverse order by Close
	closed bool
	err    error
}

// New makes an Env for t under a fresh temporary directory (short, so that
// unix socket paths stay below their 108-byte limit) and registers Close with
// t.Cleanup, reporting any error or leak as a test failure.
func New(t T) *Env {
	t.Helper()
	RequiresRoot(t)
	dir, err := os.MkdirTemp("", "feather-")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	e := &Env{Dir: dir, t: t}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("harness: %v", err)
		}
	})
	return e
}

// onClose registers stop to run at Close, after everything started later.
func (e *Env) onClose(stop func() error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stops = append(e.stops, stop)
}

// Close stops every component in reverse order of start, then kills and
// unmounts whatever is still tied to Dir — reporting each as a leak — and
// removes Dir. It is idempotent: later calls return the first call's error.
func (e *Env) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.err
	}
	e.closed = true
	var errs []error
	for i := len(e.stops) - 1; i >= 0; i-- {
		if err := e.stops[i](); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, Sweep(e.Dir))
	if err := os.RemoveAll(e.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", e.Dir, err))
	}
	e.err = errors.Join(errs...)
	return e.err
}

// Sweep kills every process and detaches every mount still tied to dir,
// removes what the shims of a killed containerd left outside it (see
// sweepTasks), and returns an error naming each: after an orderly stop there
// should be none.
// Close sweeps its Env's Dir; a program whose Env was never closed (it was
// killed) sweeps the Dir it left before removing it.
func Sweep(dir string) error {
	var errs []error
	procs, err := leak.Processes(dir)
	errs = append(errs, err)
	for _, p := range procs {
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		errs = append(errs, fmt.Errorf("leaked process %d (%s), killed", p.Pid, p.Cmdline))
	}
	if len(procs) > 0 {
		errs = append(errs, leak.WaitGone(procs))
	}
	errs = append(errs, sweepTasks(dir, containerdRunDir, cgroupRoot))
	mounts, err := leak.Mounts(dir)
	errs = append(errs, err)
	// Innermost first, so that nested mounts come off before their parents.
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("leaked mount %s: unmount: %w", mounts[i], err))
			continue
		}
		errs = append(errs, fmt.Errorf("leaked mount %s, unmounted", mounts[i]))
	}
	return errors.Join(errs...)
}
