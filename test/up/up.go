// Package up is `make up` and `make down`: a local Feather cluster — control
// plane, containerd, a registry and the agent as a Ready node — running a
// container Deployment and a unikernel Deployment, which keeps running
// after `make up` returns, until `make down`.
//
// The harness starts every component with SIGKILL on its parent's death,
// so the cluster needs an owner that outlives `make up`: up starts this
// program again, detached (its own session, output to a log file), as
// `serve`, which builds the cluster with the harness and holds it until
// SIGTERM. up and down find serve through a state directory (_output/up/):
// its pid file, log, kubeconfig and ready/error/result files.
package up

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/feather-edge/feather/test/harness"
)

// programName is the binary's name, by which serve processes are found.
const programName = "feather-up"

// Main runs the command line (without the program name) and returns the
// exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet(programName, flag.ContinueOnError)
	state := fs.String("state", "", "state directory (default: _output/up in the repository)")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long up waits for the cluster to come up, and down for it to stop")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [flags] up|down\n\n"+
			"  up    start a local Feather cluster (root; after make deps guest build) and leave it running\n"+
			"  down  stop it and remove everything it made\n\nflags:\n", programName)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		if err == nil {
			fs.Usage()
		}
		return 2
	}
	if *state == "" {
		root, err := harness.RepoRoot()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", programName, err)
			return 1
		}
		*state = filepath.Join(root, "_output", "up")
	}
	dir, err := filepath.Abs(*state)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", programName, err)
		return 1
	}
	st := State{Dir: dir}
	switch fs.Arg(0) {
	case "up":
		err = up(st, os.Stdout, *timeout)
	case "down":
		err = down(st, os.Stdout, *timeout)
	case serveArg:
		return serve(st)
	default:
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", programName, err)
		return 1
	}
	return 0
}

// lockState takes an exclusive flock on the state directory's parent (which
// outlives the state directory, so the lock does too) for the check-and-start
// of up and the check-and-stop of down; the returned func releases it and
// may be called more than once.
func lockState(st State) (func(), error) {
	parent := filepath.Dir(st.Dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Open(parent)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", parent, err)
	}
	return sync.OnceFunc(func() { f.Close() }), nil
}

// up starts serve, detached, unless a cluster is already up, waits until it
// is ready — printing serve's progress — and then shows the pods, their
// logs and how to use the cluster.
func up(st State, out io.Writer, timeout time.Duration) error {
	if os.Geteuid() != 0 {
		return errors.New("the cluster needs root (containerd, mounts, network namespaces): run `make up` as root")
	}
	unlock, err := lockState(st)
	if err != nil {
		return err
	}
	defer unlock()
	switch s, pid := st.status(); s {
	case statusRunning:
		unlock()
		if st.has(readyFile) {
			fmt.Fprintf(out, "A Feather cluster is already up (serve pid %d); `make down` stops it.\n", pid)
			return show(st, out)
		}
		fmt.Fprintf(out, "A Feather cluster is starting (serve pid %d); waiting for it.\n", pid)
		return waitReady(st, out, pid, nil, timeout)
	case statusStale:
		fmt.Fprintf(out, "An earlier cluster (serve pid %d) ended without `make down`; removing what it left.\n", pid)
		cleanStale(st, out)
	}

	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		return err
	}
	_ = st.clear(false)
	logf, err := os.OpenFile(st.path(logFile), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "--state", st.Dir, serveArg)
	cmd.Stdout, cmd.Stderr = logf, logf // stdin: /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s serve: %w", programName, err)
	}
	if err := st.write(pidFile, fmt.Sprintf("%d\n", cmd.Process.Pid)); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	unlock()
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	fmt.Fprintf(out, "Starting a Feather cluster (serve pid %d, log %s).\n", cmd.Process.Pid, st.path(logFile))
	return waitReady(st, out, cmd.Process.Pid, done, timeout)
}

// waitReady follows serve's log until it is ready, then shows the cluster.
// done, if not nil, closes when serve (a child) has exited; otherwise
// serve's pid is polled. If serve fails, the error says why. A serve of its
// own (done not nil) that is not ready within timeout, or when up is
// interrupted, is stopped; another up's is left alone.
func waitReady(st State, out io.Writer, pid int, done <-chan struct{}, timeout time.Duration) error {
	tail := &logTail{path: st.path(logFile)}
	sig := make(chan os.Signal, 1)
	if done != nil {
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sig)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	exited := func() bool {
		if done == nil {
			return !isServe(pid)
		}
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	for {
		tail.flush(out, false)
		if st.has(readyFile) {
			tail.flush(out, true)
			return show(st, out)
		}
		if exited() {
			tail.flush(out, true)
			why := st.read(errorFile)
			if why == "" {
				why = "serve exited without saying why"
			}
			_ = st.clear(false)
			why, _, _ = strings.Cut(why, "\n")
			return fmt.Errorf("the cluster did not come up: %s\n(everything it started was stopped; serve's log: %s)", why, st.path(logFile))
		}
		var stopWhy string
		select {
		case <-tick.C:
			continue
		case <-deadline.C:
			stopWhy = fmt.Sprintf("not ready within %s", timeout)
			if done == nil {
				return errors.New(stopWhy)
			}
		case s := <-sig:
			stopWhy = fmt.Sprintf("interrupted (%s)", s)
		}
		fmt.Fprintf(out, "%s: stopping the cluster.\n", stopWhy)
		if err := down(st, out, 5*time.Minute); err != nil {
			return fmt.Errorf("%s; stopping: %w", stopWhy, err)
		}
		return errors.New(stopWhy)
	}
}

// show prints `kubectl get pods -o wide`, each pod's logs, and the lines
// that point kubectl at the cluster.
func show(st State, out io.Writer) error {
	kubectl, err := harness.Bin("kubectl")
	if err != nil {
		return err
	}
	kubeconfig := st.path(kubeconfigFile)
	run := func(args ...string) string {
		fmt.Fprintf(out, "\n$ kubectl %s\n", strings.Join(args, " "))
		cmd := exec.Command(kubectl, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		b, err := cmd.CombinedOutput()
		_, _ = out.Write(b)
		if err != nil {
			fmt.Fprintf(out, "(kubectl: %v)\n", err)
		}
		return string(b)
	}
	run("get", "nodes", "-o", "wide")
	run("get", "pods", "-o", "wide")
	run("get", "services")
	cmd := exec.Command(kubectl, "get", "pods", "-o", "name")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	names, _ := cmd.Output()
	for _, pod := range strings.Fields(string(names)) {
		run("logs", pod)
	}
	fmt.Fprintf(out, "\nThe cluster runs until `make down`. To use it with kubectl:\n\n"+
		"  export KUBECONFIG=%s\n  export PATH=%s:$PATH\n  kubectl get nodes,pods -o wide\n"+
		"  kubectl get --raw /api/v1/nodes/%s/proxy/pods      # the node's kubelet API, through the API server\n"+
		"  kubectl logs %s                                  # pods reach Services by DNS name\n"+
		"  kubectl top pod                                          # CPU and memory, containers and unikernels (metrics-server)\n",
		kubeconfig, filepath.Dir(kubectl), NodeName, clientPodName)
	return nil
}

// down stops the running serve — it deletes the pods, then closes the
// harness — waits until it has exited, reports what it found wrong, and
// removes the state directory. With nothing up it says so and does nothing.
func down(st State, out io.Writer, timeout time.Duration) error {
	unlock, err := lockState(st)
	if err != nil {
		return err
	}
	defer unlock()
	s, pid := st.status()
	switch s {
	case statusNone:
		fmt.Fprintln(out, "No Feather cluster is up: nothing to stop.")
		return nil
	case statusStale:
		fmt.Fprintf(out, "The cluster (serve pid %d) had ended without `make down`; removing what it left.\n", pid)
		cleanStale(st, out)
		return nil
	}
	fmt.Fprintf(out, "Stopping the Feather cluster (serve pid %d).\n", pid)
	tail := &logTail{path: st.path(logFile), offset: size(st.path(logFile))}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal serve (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for alive(pid) && time.Now().Before(deadline) {
		tail.flush(out, false)
		time.Sleep(250 * time.Millisecond)
	}
	tail.flush(out, true)
	if alive(pid) {
		fmt.Fprintf(out, "serve (pid %d) did not stop within %s: killing it.\n", pid, timeout)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		cleanStale(st, out)
		return fmt.Errorf("serve did not stop within %s; killed it and swept what it left", timeout)
	}
	result := st.read(resultFile)
	if env := st.read(envFile); env != "" {
		if _, err := os.Stat(env); err == nil { // serve removes it when it stops cleanly
			cleanStale(st, out)
		}
	}
	if err := st.clear(true); err != nil {
		return err
	}
	if result != "ok" {
		if result == "" {
			result = "serve ended without a result"
		}
		return fmt.Errorf("stopped, but:\n%s", result)
	}
	fmt.Fprintln(out, "Stopped: no process, mount, network namespace or container is left.")
	return nil
}

// cleanStale kills and unmounts what a serve that did not stop in order
// left tied to its harness tree, removes the tree and the state directory,
// and prints what it found.
func cleanStale(st State, out io.Writer) {
	if env := st.read(envFile); env != "" {
		if _, err := os.Stat(env); err == nil {
			if err := harness.Sweep(env); err != nil {
				fmt.Fprintf(out, "%v\n", err)
			}
			if err := os.RemoveAll(env); err != nil {
				fmt.Fprintf(out, "%v\n", err)
			}
		}
	}
	if err := st.clear(true); err != nil {
		fmt.Fprintf(out, "%v\n", err)
	}
}
