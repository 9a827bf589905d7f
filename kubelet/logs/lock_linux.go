package logs

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// A writer holds an exclusive flock(2) on the log file it writes, from the
// moment it opens it until it closes it (the file taken over by rotation
// included), so that the agent can tell when the logger of a run that ended
// has written the run's last output: the runc shim closes the container's
// pipes only once the task is deleted, and the logger writes an
// unterminated last line only at the end of its stream.

// lockWriter takes the writer's lock on f; a file some other writer holds is
// written anyway (a lock is a hint to readers, never a reason to lose a log).
func lockWriter(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// lockPoll is how often WaitWriter looks at the lock.
const lockPoll = 20 * time.Millisecond

// WaitWriter waits until no writer holds the log file at path — its logger
// has drained the container's streams and closed it — or timeout passes. It
// reports whether the writer is done; a missing file has none.
func WaitWriter(path string, timeout time.Duration) bool {
	f, err := os.Open(path)
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return true
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return false
		}
		time.Sleep(lockPoll)
	}
}
