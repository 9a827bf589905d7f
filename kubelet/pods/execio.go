package pods

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/fifo"
)

// mergedIO is the IO of an exec whose stdout and stderr go to one writer
// and that has no stdin and no terminal (a probe's, a hook's): one fifo,
// which containerd's shim opens twice, for the process's stdout and its
// stderr, read into the writer by one goroutine. cio's own IO makes a
// directory and a fifo per stream, opened and copied each by goroutines
// of their own, and removes the directory afterwards: for an exec probe
// every few seconds that was most of the exec's work in the agent.
type mergedIO struct {
	path string
	r    io.ReadCloser
	done chan struct{} // closed when the copy has ended
	stop sync.Once
}

// mergedIOCreator returns a cio.Creator of mergedIO with its fifos in dir,
// copying into w. w must not be used until the IO's Wait returned.
func mergedIOCreator(dir string, w io.Writer) cio.Creator {
	return func(id string) (cio.IO, error) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("exec %s io: %w", id, err)
		}
		path := filepath.Join(dir, id+"-out")
		// Opened without blocking: the read side is in place before the
		// shim opens its write side.
		r, err := fifo.OpenFifo(context.Background(), path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			_ = os.Remove(path)
			return nil, fmt.Errorf("exec %s io: %w", id, err)
		}
		m := &mergedIO{path: path, r: r, done: make(chan struct{})}
		go func() {
			defer close(m.done)
			buf := make([]byte, 4<<10)
			_, _ = io.CopyBuffer(w, r, buf)
		}()
		return m, nil
	}
}

// Config names the fifo as the process's stdout and stderr.
func (m *mergedIO) Config() cio.Config {
	return cio.Config{Stdout: m.path, Stderr: m.path}
}

// Cancel stops the copy: the fifo's read side is closed, so output not
// read yet is dropped.
func (m *mergedIO) Cancel() {
	m.stop.Do(func() { _ = m.r.Close() })
}

// Wait returns once the copy has ended: the shim closed both of its write
// sides (the process and whatever kept its output open ended), or Cancel.
func (m *mergedIO) Wait() {
	<-m.done
}

// Close releases the read side and removes the fifo.
func (m *mergedIO) Close() error {
	m.Cancel()
	if err := os.Remove(m.path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove exec fifo: %w", err)
	}
	return nil
}
