package up

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The files of the state directory. up creates pidFile exclusively — it is
// the lock that keeps a second up from starting a second cluster — and
// serve writes the rest.
const (
	pidFile        = "serve.pid"  // serve's process id; exists while a cluster is up or starting
	logFile        = "serve.log"  // serve's stdout and stderr
	envFile        = "env"        // the harness's tree, so that stale state can be swept
	kubeconfigFile = "kubeconfig" // cluster-admin kubeconfig for kubectl
	readyFile      = "ready"      // written once the cluster and its Deployments run
	errorFile      = "error"      // why serve failed, written before it cleans up and exits
	resultFile     = "result"     // written by serve last: "ok" or what went wrong stopping
)

// serveArg is serve's subcommand, by which a process is recognised as one.
const serveArg = "serve"

// State is the directory through which up, serve and down find each other:
// a cluster is up while its pid file names a live serve process.
type State struct {
	Dir string
}

func (s State) path(name string) string { return filepath.Join(s.Dir, name) }

// status is what a State holds.
type status int

const (
	statusNone    status = iota // no pid file: nothing is up
	statusRunning               // the pid file names a live serve
	statusStale                 // a pid file whose serve is gone (killed, or the machine rebooted)
)

// status reads the pid file and says whether its serve still runs, with its
// pid (0 where the file holds none).
func (s State) status() (status, int) {
	b, err := os.ReadFile(s.path(pidFile))
	if errors.Is(err, os.ErrNotExist) {
		return statusNone, 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return statusStale, 0
	}
	if !isServe(pid) {
		return statusStale, pid
	}
	return statusRunning, pid
}

// lock creates the pid file; it fails with os.ErrExist where there is one.
func (s State) lock() (*os.File, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(s.path(pidFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}

// has reports whether the state file name exists.
func (s State) has(name string) bool {
	_, err := os.Stat(s.path(name))
	return err == nil
}

// read returns the trimmed content of the state file name, "" if missing.
func (s State) read(name string) string {
	b, _ := os.ReadFile(s.path(name))
	return strings.TrimSpace(string(b))
}

// write stores content as the state file name atomically, so that a reader
// polling for it never sees it half written.
func (s State) write(name, content string) error {
	tmp := s.path("." + name + ".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path(name))
}

// clear removes the files of one run, keeping the log for a failed run to
// be read; clear(true) removes the whole directory.
func (s State) clear(all bool) error {
	if all {
		return os.RemoveAll(s.Dir)
	}
	var errs []error
	for _, name := range []string{pidFile, envFile, kubeconfigFile, readyFile, errorFile, resultFile} {
		if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isServe reports whether pid is a live (not zombie) serve process of this
// program, so that a pid reused by another process is not taken for one.
func isServe(pid int) bool {
	if !alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && isServeCmdline(cmdline)
}

// isServeCmdline reports whether a /proc/PID/cmdline (NUL-separated) is
// `feather-up [flags] serve …`.
func isServeCmdline(cmdline []byte) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 || filepath.Base(args[0]) != programName {
		return false
	}
	for _, a := range args[1:] {
		if a == serveArg {
			return true
		}
	}
	return false
}

// alive reports whether pid still exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

// logTail follows a log file from an offset: each call copies the complete
// lines written since to w.
type logTail struct {
	path   string
	offset int64
}

// flush copies the new complete lines; with all set, a last partial line
// too.
func (t *logTail) flush(w io.Writer, all bool) {
	f, err := os.Open(t.path)
	if err != nil {
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, t.offset, 1<<40))
	if err != nil || len(b) == 0 {
		return
	}
	if !all {
		i := bytes.LastIndexByte(b, '\n')
		if i < 0 {
			return
		}
		b = b[:i+1]
	}
	t.offset += int64(len(b))
	_, _ = w.Write(b)
}

// size returns the file's current size, 0 if it is missing.
func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
