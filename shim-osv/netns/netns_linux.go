package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that is inside the network namespace at nsPath
// (a bind mount such as /var/run/netns/NAME, or /proc/PID/ns/net) and returns
// fn's error. With nsPath "" it simply calls fn in the caller's namespace.
//
// fn runs on a dedicated goroutine locked to its thread; Do blocks until fn
// returns, and a panic in fn is re-raised in the caller. Everything fn does on
// that thread happens inside the namespace: netlink calls, opening
// /dev/net/tun, and processes it starts (exec.Cmd.Start forks from the calling
// thread, so the child inherits the namespace and keeps it after Do returns;
// the shim starts QEMU this way). Goroutines that fn starts run on other
// threads and are NOT in the namespace.
//
// Afterwards the thread is moved back to its original namespace; if that
// fails, the thread stays locked and is destroyed when the goroutine exits,
// so no other goroutine ever runs in the wrong namespace.
//
// A missing nsPath, or a file that is not a namespace (e.g. an unmounted
// bind-mount target), gives an error wrapping errdefs.ErrNotFound.
func Do(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	target, err := openNS(nsPath)
	if err != nil {
		return err
	}
	defer target.Close()

	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("open current netns: %w", err)}
			return
		}
		defer origin.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}

		r := func() (r result) {
			defer func() {
				if p := recover(); p != nil {
					r = result{panicked: true, panicVal: p}
				}
			}()
			return result{err: fn()}
		}()

		if err := unix.Setns(int(origin.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine.
			r.err = errors.Join(r.err, fmt.Errorf("restore netns after %s: %w", nsPath, err))
			done <- r
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// openNS opens a network namespace file and checks that it is one.
func openNS(nsPath string) (*os.File, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("netns %s: %w", nsPath, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("open netns: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("statfs netns %s: %w", nsPath, err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		f.Close()
		return nil, fmt.Errorf("netns %s is not a namespace (not mounted?): %w", nsPath, errdefs.ErrNotFound)
	}
	return f, nil
}
