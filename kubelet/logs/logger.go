package logs

import (
	"io"
	"os"
)

// BinaryLogger is containerd's binary:// logging protocol on the logger's
// side: containerd's shim starts the logger with the task's stdout on fd 3,
// its stderr on fd 4, and fd 5 to close once the logger is ready. It closes
// fd 5 (even when it fails: the shim waits for it), then writes both streams
// to the log file at path until they end.
func BinaryLogger(path string) error {
	f, err := Open(path)
	ready := os.NewFile(5, "ready")
	ready.Close()
	if err != nil {
		return err
	}
	done := make(chan struct{}, 2)
	for fd, s := range map[uintptr]StreamType{3: Stdout, 4: Stderr} {
		go func() {
			in := os.NewFile(fd, string(s))
			w := f.Stream(s)
			_, _ = io.Copy(w, in)
			w.Close()
			done <- struct{}{}
		}()
	}
	<-done
	<-done
	return f.Close()
}
