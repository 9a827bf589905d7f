package logs

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// DrainGrace is how long a logger goes on copying the container's output
// after containerd's shim asks it to stop (SIGTERM): the runc shim sends it
// as soon as the task is deleted, with the container's last output maybe
// still in the pipes, and kills the logger 12 s later. The streams usually
// end at once (the container exited, the shim closed its ends); only a
// process left holding the pipes makes the logger wait this long.
const DrainGrace = 10 * time.Second

// The arguments of a logging binary: containerd's shims pass a binary://
// URI's query as "key value" pairs, in no fixed order.
const (
	argPath     = "cri-log"
	argMaxSize  = "max-size"
	argMaxFiles = "max-files"
)

// LoggerQuery returns the query of the binary:// URI that makes a logging
// binary ([ParseLoggerArgs], [BinaryLogger]) write the CRI log at path,
// rotated as rot says (not at all for the zero Rotation).
func LoggerQuery(path string, rot Rotation) url.Values {
	q := url.Values{argPath: {path}}
	if rot.MaxSize > 0 {
		q.Set(argMaxSize, strconv.FormatInt(rot.MaxSize, 10))
		q.Set(argMaxFiles, strconv.Itoa(rot.MaxFiles))
	}
	return q
}

// ParseLoggerArgs parses a logging binary's arguments, the pairs of
// [LoggerQuery] in any order: "cri-log PATH" and, for rotation,
// "max-size BYTES max-files N".
func ParseLoggerArgs(args []string) (path string, rot Rotation, err error) {
	if len(args)%2 != 0 {
		return "", rot, fmt.Errorf("arguments %q: want KEY VALUE pairs", args)
	}
	for i := 0; i < len(args); i += 2 {
		k, v := args[i], args[i+1]
		switch k {
		case argPath:
			path = v
		case argMaxSize:
			rot.MaxSize, err = strconv.ParseInt(v, 10, 64)
		case argMaxFiles:
			rot.MaxFiles, err = strconv.Atoi(v)
		default:
			return "", rot, fmt.Errorf("unknown argument %q", k)
		}
		if err != nil {
			return "", rot, fmt.Errorf("%s %q: %w", k, v, err)
		}
	}
	if path == "" {
		return "", rot, fmt.Errorf("no %s PATH", argPath)
	}
	if rot.MaxSize != 0 || rot.MaxFiles != 0 {
		if err := rot.Validate(); err != nil {
			return "", rot, err
		}
	}
	return path, rot, nil
}

// BinaryLogger is containerd's binary:// logging protocol on the logger's
// side: containerd's shim starts the logger with the task's stdout on fd 3,
// its stderr on fd 4, and fd 5 to close once the logger is ready. It closes
// fd 5 (even when it fails: the shim waits for it), then writes both streams
// to the log file at path, rotated as rot says, until they end.
//
// SIGTERM does not stop it: the shim sends it when the task is deleted, and
// what the container wrote last may still be in the pipes (a container that
// prints and exits at once lost its whole log that way). The logger drains
// the streams to their end and closes the file, which writes an unterminated
// last line; after [DrainGrace] it closes the file with what it has.
//
// Rotation happens here, in the one process that writes the file, rather
// than in the agent: the writer never loses a line to a rename it did not
// see, it needs no reopen signal (containerd's binary loggers have none) and
// it goes on while the agent is down or restarting.
func BinaryLogger(path string, rot Rotation) error {
	// Before ready: the shim may signal as soon as the logger is ready.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)
	f, err := OpenRotating(path, rot)
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
	var deadline <-chan time.Time
	for ended := 0; ended < 2; {
		select {
		case <-done:
			ended++
		case <-term:
			if deadline == nil {
				deadline = time.After(DrainGrace)
			}
		case <-deadline:
			return f.Close() // a process still holds the pipes
		}
	}
	return f.Close()
}
