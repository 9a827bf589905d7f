package harness

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Process is a child program the harness owns. It runs in a process group of
// its own, dies with the test binary (SIGKILL on parent death), writes stdout
// and stderr to its log file, and is reaped by a goroutine, so Exited closes
// as soon as it ends.
type Process struct {
	// Name is how errors and logs refer to the process.
	Name string
	// Log is the file that holds its stdout and stderr.
	Log string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done closes
}

// startProcess starts argv[0] with argv[1:] and env added to the harness's own
// environment.
func startProcess(name, logPath string, env []string, argv ...string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has ended and was reaped.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM and, if the process has not ended within grace, SIGKILL
// to its whole process group. It returns once the process was reaped, and may
// be called any number of times.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
	}
	// Whatever else ran in its group goes with it.
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitReady polls ready every 100ms until it returns nil, the process ends, or
// ctx is done; the error then says why and carries the log's tail.
func (p *Process) waitReady(ctx context.Context, ready func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); log %s:\n%s", p.Name, p.err, p.Log, p.Tail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v); log %s:\n%s", p.Name, ctx.Err(), err, p.Log, p.Tail(30))
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct TCP ports that are free on 127.0.0.1 now. The
// kernel picks them; holding all listeners until the end keeps them distinct.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// flags renders a map of flags as --name=value, sorted for readable logs.
func flags(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, "--"+k+"="+m[k])
	}
	return out
}
