package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/console"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentAttach drives kubectl attach -i and kubectl run -i/-it --rm with a
// real kubectl as a user types it: input reaches a container's stdin (which
// containerd's runc shim does not wire for a container whose output goes to
// a logging binary, so a stdio helper owns it), an attached session's output
// is in kubectl logs too, the helper outlives an agent restart, and a
// stdinOnce container's stdin ends with its first session.
func TestAgentAttach(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	t.Cleanup(func() { deleteAll(context.Background(), t, c) })

	cat := newPod("cat", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: []string{"cat"}, Stdin: true})
	c.create(ctx, t, cat)
	c.waitPod(t, "cat", 2*time.Minute, phase(corev1.PodRunning))
	c.waitKubeletAPI(t)

	t.Run("attach stdin", func(t *testing.T) {
		c.attachEcho(ctx, t, "cat", "hello attach")
		if out, err := c.kubectl(ctx, t, "logs", "cat"); err != nil || !strings.Contains(out, "hello attach\n") {
			t.Errorf("kubectl logs cat after attach: %q, %v", out, err)
		}
	})

	t.Run("attach after agent restart", func(t *testing.T) {
		c.agent.Kill()
		if err := c.agent.Start(); err != nil {
			t.Fatal(err)
		}
		// Once the restarted agent serves the pod again, a second session
		// reaches the same cat: its helper went on.
		c.waitKubeletAPI(t)
		var last string
		waitFor(t, "the restarted agent serving cat's log", time.Minute, func(ctx context.Context) (bool, error) {
			out, err := c.kubectl(ctx, t, "logs", "cat")
			last = fmt.Sprintf("%q, %v", out, err)
			return err == nil && strings.Contains(out, "hello attach"), nil
		}, &last)
		c.attachEcho(ctx, t, "cat", "after restart")
		if out, err := c.kubectl(ctx, t, "logs", "cat"); err != nil || !strings.Contains(out, "hello attach\nafter restart\n") {
			t.Errorf("kubectl logs cat after the restart: %q, %v", out, err)
		}
		if p := c.pod(ctx, t, "cat"); len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("cat restarted: %+v", p.Status.ContainerStatuses)
		}
	})

	t.Run("debug -i", func(t *testing.T) {
		// An ephemeral container with stdin (kubectl debug -i) in the
		// process namespace of cat.
		c.typeLine(ctx, t, []string{"debug", "-i", "cat", "--image=" + c.busybox, "--target=c", "--", "sh", "-c", "read x; echo got $x"},
			"hello debug", "got hello debug")
	})

	overrides := `{"apiVersion":"v1","spec":{"terminationGracePeriodSeconds":3,"tolerations":[{"key":"virtual-kubelet.io/provider","operator":"Exists"}]}}`
	for _, tc := range []struct{ name, flag string }{
		{"run -i --rm", "-i"},
		{"run -it --rm", "-it"}, // stdin is a pipe: kubectl says it cannot use a TTY, the container has one
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := strings.ReplaceAll(strings.TrimPrefix(tc.flag, "-"), "t", "tty") + "-rm"
			cmd := c.kubectlCmd(ctx, t, "run", tc.flag, "--rm", "--restart=Never", "--image="+c.busybox, "--overrides="+overrides,
				pod, "--", "sh", "-c", "read x; echo got $x")
			cmd.Stdin = strings.NewReader("hello run\n")
			var stdout, stderr syncOutput
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Errorf("kubectl run %s: %v; stdout %q, stderr %q", tc.flag, err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), "got hello run") {
				t.Errorf("kubectl run %s: stdout %q, want \"got hello run\" (stderr %q)", tc.flag, stdout.String(), stderr.String())
			}
			c.waitPodGone(ctx, t, pod)
		})
	}

	t.Run("run -it on a terminal", func(t *testing.T) {
		// kubectl run -it as typed on a terminal: the line typed reaches the
		// container's terminal, its answer comes back, the pod is removed.
		pty, slave, err := console.NewPty()
		if err != nil {
			t.Fatal(err)
		}
		defer pty.Close()
		tty, err := os.OpenFile(slave, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		cmd := c.kubectlCmd(ctx, t, "run", "-it", "--rm", "--restart=Never", "--image="+c.busybox, "--overrides="+overrides,
			"term-rm", "--", "sh", "-c", "read x; echo got $x")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var out syncOutput
		go func() { _, _ = io.Copy(&out, pty) }()
		// kubectl prints its hint once attached; the shell waits in read.
		waitFor(t, "kubectl run -it attached", 2*time.Minute, func(context.Context) (bool, error) {
			return strings.Contains(out.String(), "If you don't see a command prompt"), nil
		})
		if _, err := pty.Write([]byte("typed line\r")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("kubectl run -it: %v; terminal: %q", err, out.String())
			}
		case <-time.After(time.Minute):
			t.Fatalf("kubectl run -it did not end; terminal: %q", out.String())
		}
		waitFor(t, "the answer on the terminal", 10*time.Second, func(context.Context) (bool, error) {
			return strings.Contains(out.String(), "got typed line"), nil
		})
		c.waitPodGone(ctx, t, "term-rm")
	})
}

// attachEcho runs kubectl attach -i to pod's cat, types line, reads it back
// from cat and ends the input, which ends the session.
func (c *cluster) attachEcho(ctx context.Context, t *testing.T, pod, line string) {
	t.Helper()
	c.typeLine(ctx, t, []string{"attach", "-i", pod}, line, line)
}

// typeLine runs kubectl with args and its input on a pipe, as a user at it
// would: types line, waits for a line of output that is want, then ends the
// input; kubectl must then end, successfully.
func (c *cluster) typeLine(ctx context.Context, t *testing.T, args []string, line, want string) {
	t.Helper()
	cmd := c.kubectlCmd(ctx, t, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncOutput
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	got := make(chan bool, 1)
	var seen syncOutput
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			fmt.Fprintln(&seen, sc.Text())
			if sc.Text() == want && !found {
				found = true
				got <- true
			}
		}
		if !found {
			got <- false
		}
	}()
	// kubectl sends its input once its streams are up; what comes before
	// waits in the pipe.
	if _, err := fmt.Fprintln(in, line); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-got:
		if !ok {
			t.Errorf("kubectl %s: no line %q in its output %q; stderr %q", strings.Join(args, " "), want, seen.String(), stderr.String())
		}
	case <-time.After(time.Minute):
		t.Errorf("kubectl %s: no line %q in a minute (output %q); stderr %q", strings.Join(args, " "), want, seen.String(), stderr.String())
	}
	in.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("kubectl %s: %v; stderr %q", strings.Join(args, " "), err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("kubectl %s did not end with its input; stderr %q", strings.Join(args, " "), stderr.String())
		_ = cmd.Process.Kill()
		<-exited
	}
}

// waitKubeletAPI waits until the agent's kubelet API answers through the
// API server's node proxy: it serves once the node's serving certificate
// is approved and issued.
func (c *cluster) waitKubeletAPI(t *testing.T) {
	t.Helper()
	var last string
	waitFor(t, "the kubelet API serving", 2*time.Minute, func(ctx context.Context) (bool, error) {
		b, err := c.kube.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", c.agent.Name, "proxy", "healthz").DoRaw(ctx)
		last = fmt.Sprintf("%q, %v", b, err)
		return err == nil && string(b) == "ok", nil
	}, &last)
}

// waitPodGone waits until pod is deleted from the API.
func (c *cluster) waitPodGone(ctx context.Context, t *testing.T, pod string) {
	t.Helper()
	waitFor(t, "pod "+pod+" removed", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := c.kube.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
