package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	corev1 "k8s.io/api/core/v1"
)

// TestAgentExec drives the kubelet API's streams with a real kubectl as a
// user types it: port-forward to a container pod (whose server listens on
// its localhost only) and to a unikernel pod; exec with exit codes, stdin
// and a terminal; cp both ways; attach; and kubelet's answers for an exec
// into a unikernel and into a container that has exited.
func TestAgentExec(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	t.Cleanup(func() { deleteAll(context.Background(), t, c) })

	c.create(ctx, t,
		newPod("web", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
			Command: sh("mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www")}),
		newPod("ticker", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox,
			Command: sh("i=0; while :; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.2; done")}),
		// Running, with one container that has exited (kubectl itself
		// refuses an exec into a pod that has completed).
		newPod("half", corev1.RestartPolicyNever,
			corev1.Container{Name: "c", Image: c.busybox, Command: []string{"sleep", "3600"}},
			corev1.Container{Name: "x", Image: c.busybox, Command: sh("echo bye")}))
	vm := newPod("vm", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.unikernel, Args: []string{"/httpd", "8080"}})
	vm.Spec.RuntimeClassName = ptrTo("osv")
	c.create(ctx, t, vm)
	for _, name := range []string{"web", "ticker", "vm"} {
		c.waitPod(t, name, 2*time.Minute, phase(corev1.PodRunning))
	}
	c.waitPod(t, "half", time.Minute, func(p *corev1.Pod) bool {
		for _, st := range p.Status.ContainerStatuses {
			if st.Name == "x" && st.State.Terminated != nil {
				return p.Status.Phase == corev1.PodRunning
			}
		}
		return false
	})

	t.Run("port-forward container", func(t *testing.T) {
		c.portForward(ctx, t, "pod/web", "8080", "hello from web\n")
	})
	t.Run("port-forward unikernel", func(t *testing.T) {
		// First the node itself must reach the VM at its pod IP (the
		// agent dials that address): a failure here is the pod network's,
		// not port-forward's.
		ip := c.pod(ctx, t, "vm").Status.PodIP
		var last string
		waitFor(t, "the node reaching the unikernel at "+ip, 2*time.Minute, func(ctx context.Context) (bool, error) {
			got, err := httpGet(ctx, "http://"+net.JoinHostPort(ip, "8080")+"/")
			last = fmt.Sprintf("%q, %v", got, err)
			return err == nil && got == "hello from feather guest\n", nil
		}, &last)
		c.portForward(ctx, t, "pod/vm", "8080", "hello from feather guest\n")
	})

	t.Run("exec exit code", func(t *testing.T) {
		cmd := c.kubectlCmd(ctx, t, "exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("kubectl exec -- sh -c 'exit 3': %v, want exit code 3 (stderr %q)", err, stderr.String())
		}
		if stdout.String() != "out\n" || !strings.HasPrefix(stderr.String(), "err\n") {
			t.Errorf("kubectl exec: stdout %q, stderr %q; want \"out\\n\" and \"err\\n\"…", stdout.String(), stderr.String())
		}
		if out, err := c.kubectl(ctx, t, "exec", "web", "--", "true"); err != nil || out != "" {
			t.Errorf("kubectl exec -- true: %q, %v", out, err)
		}
	})

	t.Run("exec stdin", func(t *testing.T) {
		cmd := c.kubectlCmd(ctx, t, "exec", "-i", "web", "--", "tr", "a-z", "A-Z")
		cmd.Stdin = strings.NewReader("hello\nworld\n")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "HELLO\nWORLD\n" {
			t.Errorf("kubectl exec -i -- tr: %q, %v", out, err)
		}
	})

	t.Run("exec terminal", func(t *testing.T) {
		// kubectl exec -it on a terminal of 33 rows and 101 columns: the
		// process has a terminal of that size, then of the new size.
		pty, slave, err := console.NewPty()
		if err != nil {
			t.Fatal(err)
		}
		defer pty.Close()
		if err := pty.Resize(console.WinSize{Height: 33, Width: 101}); err != nil {
			t.Fatal(err)
		}
		tty, err := os.OpenFile(slave, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		cmd := c.kubectlCmd(ctx, t, "exec", "-it", "web", "--", "sh")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		// The terminal is kubectl's controlling one, as in a shell: a
		// resize then signals it (SIGWINCH).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close()
		out := &syncOutput{}
		go io.Copy(out, pty) //nolint:errcheck // ends when the pty closes
		if _, err := pty.Write([]byte("tty; stty size; echo =$((6*7))=\n")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the shell's answer", 30*time.Second, func(context.Context) (bool, error) {
			return strings.Contains(out.String(), "=42="), nil
		})
		if s := out.String(); !strings.Contains(s, "/dev/pts/") || !strings.Contains(s, "33 101") {
			t.Errorf("kubectl exec -it: no terminal of 33x101: %q\nagent: %s", s, grepLines(c.agent.Log(400), "exec"))
		}
		if err := pty.Resize(console.WinSize{Height: 40, Width: 120}); err != nil {
			t.Fatal(err)
		}
		// kubectl sends the new size on SIGWINCH, which the kernel gives
		// the terminal's foreground process group on a resize; poll until
		// the shell sees it.
		waitFor(t, "the resized terminal", 30*time.Second, func(context.Context) (bool, error) {
			pty.Write([]byte("stty size\n")) // once per poll
			return strings.Contains(out.String(), "40 120"), nil
		})
		pty.Write([]byte("exit 5\n"))
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			t.Errorf("kubectl exec -it, exit 5: %v; output %q", err, out.String())
		}
	})

	t.Run("cp", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "up.txt")
		if err := os.WriteFile(src, []byte("uploaded\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := c.kubectl(ctx, t, "cp", src, "web:/tmp/up.txt"); err != nil {
			t.Fatalf("kubectl cp to the pod: %v: %s", err, out)
		}
		if out, err := c.kubectl(ctx, t, "exec", "web", "--", "cat", "/tmp/up.txt"); err != nil || out != "uploaded\n" {
			t.Errorf("after kubectl cp: cat = %q, %v", out, err)
		}
		dst := filepath.Join(dir, "down.html")
		if out, err := c.kubectl(ctx, t, "cp", "web:/www/index.html", dst); err != nil {
			t.Fatalf("kubectl cp from the pod: %v: %s", err, out)
		}
		if b, err := os.ReadFile(dst); err != nil || string(b) != "hello from web\n" {
			t.Errorf("kubectl cp from the pod: %q, %v", b, err)
		}
	})

	t.Run("attach", func(t *testing.T) {
		actx, acancel := context.WithCancel(ctx)
		defer acancel()
		cmd := c.kubectlCmd(actx, t, "attach", "ticker")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr syncOutput
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { acancel(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		var got []string
		for len(got) < 3 && sc.Scan() {
			got = append(got, sc.Text())
		}
		for _, l := range got {
			if !strings.HasPrefix(l, "tick ") {
				t.Errorf("kubectl attach stdout: %q", got)
				break
			}
		}
		if len(got) < 3 {
			t.Errorf("kubectl attach: %q; stderr %q", got, stderr.String())
		}
		waitFor(t, "stderr through attach", 10*time.Second, func(context.Context) (bool, error) {
			return strings.Contains(stderr.String(), "tock "), nil
		})
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"exec", "vm", "--", "sh"}, "OSv unikernel, which runs one program and has no shell"},
			{[]string{"exec", "half", "-c", "x", "--", "true"}, `container not found ("x")`},
			{[]string{"attach", "half", "-c", "x"}, `container not found ("x")`},
			{[]string{"exec", "web", "-c", "nope", "--", "true"}, `is not valid for pod web`},
		} {
			out, err := c.kubectl(ctx, t, tc.args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("kubectl %s: %q, %v; want an error with %q", strings.Join(tc.args, " "), out, err, tc.want)
			}
		}
	})
}

// portForward runs kubectl port-forward to target's port on a free local
// port and fetches / through it until it answers want.
func (c *cluster) portForward(ctx context.Context, t *testing.T, target, port, want string) {
	t.Helper()
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	cmd := c.kubectlCmd(fctx, t, "port-forward", target, "0:"+port)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncOutput
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fcancel(); _ = cmd.Wait() }()
	// "Forwarding from 127.0.0.1:43567 -> 8080"
	re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> ` + port)
	sc := bufio.NewScanner(stdout)
	local := ""
	for local == "" && sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			local = m[1]
		}
	}
	if local == "" {
		t.Fatalf("kubectl port-forward %s: no local port; stderr %q", target, stderr.String())
	}
	go io.Copy(io.Discard, stdout) //nolint:errcheck // "Handling connection for …" lines
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			out, err := c.kubectl(context.Background(), t, "logs", target)
			t.Logf("kubectl logs %s: %s %v", target, out, err)
		}
	})
	waitFor(t, "an answer through kubectl port-forward "+target, 2*time.Minute, func(ctx context.Context) (bool, error) {
		got, err := httpGet(ctx, "http://127.0.0.1:"+local+"/")
		last = fmt.Sprintf("%q, %v; kubectl: %q", got, err, stderr.String())
		return err == nil && got == want, nil
	}, &last)
	// A second connection through the same forward.
	if got, err := httpGet(ctx, "http://127.0.0.1:"+local+"/"); err != nil || got != want {
		t.Errorf("second fetch through port-forward %s: %q, %v", target, got, err)
	}
}

// syncOutput collects what a process writes while the test reads it.
type syncOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncOutput) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncOutput) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
