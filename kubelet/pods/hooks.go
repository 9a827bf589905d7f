package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// hookUserAgent is what kubelet's HTTP lifecycle hooks send.
const hookUserAgent = "kube-lifecycle/1.37"

// minGrace is the least time a container gets between SIGTERM and SIGKILL
// after its preStop hook, as kubelet gives.
const minGrace = 2 * time.Second

// runHook runs lifecycle handler h of container c (run in) until it ends or
// ctx does, as kubelet's handler runner: an exec fails on a non-zero exit,
// an httpGet only when no response comes (any status will do), a sleep
// only ends early with ctx. The error is kubelet's message.
func (w *worker) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, in instance, h *corev1.LifecycleHandler) error {
	podName := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
	switch {
	case h.Exec != nil:
		out := &limitedBuffer{n: maxProbeOutput}
		code, err := w.p.execIn(ctx, in, h.Exec.Command, ExecIO{Output: out})
		if err == nil && code != 0 {
			err = fmt.Errorf("command '%s' exited with %d: %s", strings.Join(h.Exec.Command, " "), code, out.String())
		}
		if err != nil {
			return fmt.Errorf("Exec lifecycle hook (%v) for Container %q in Pod %q failed - error: %v, message: %q", //nolint:staticcheck // kubelet's text
				h.Exec.Command, c.Name, podName, err, out.String())
		}
		return nil
	case h.HTTPGet != nil:
		tg := target{c: c, host: w.probeHost(pod)}
		req, err := tg.httpRequest(ctx, h.HTTPGet, hookUserAgent)
		if err == nil {
			var resp *http.Response
			resp, err = httpClient(req.URL.Hostname()).Do(req)
			if resp != nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeOutput))
				resp.Body.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: %v", h.HTTPGet.Path, c.Name, podName, err) //nolint:staticcheck // kubelet's text
		}
		return nil
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
		return nil
	case h.TCPSocket != nil:
		return fmt.Errorf("Cannot run handler: tcpSocket lifecycle hooks are deprecated and not run") //nolint:staticcheck // kubelet's text
	}
	return errors.New("Cannot run handler: invalid handler") //nolint:staticcheck // kubelet's text
}

// postStart runs container c's postStart hook, if it has one, right after
// the run in started, as kubelet does: the pod's other containers wait for
// it. On failure it records FailedPostStartHook, kills the container (its
// preStop hook runs first) and returns the error; the container is run
// again per restartPolicy.
func (w *worker) postStart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, in instance) error {
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return nil
	}
	err := w.runHook(ctx, pod, c, in, c.Lifecycle.PostStart)
	if err == nil {
		return nil
	}
	w.p.events.Event(pod, corev1.EventTypeWarning, "FailedPostStartHook", err.Error())
	w.p.events.Event(pod, corev1.EventTypeNormal, "Killing", "FailedPostStartHook")
	w.killContainer(context.WithoutCancel(ctx), pod, c, in, podGrace(pod))
	return err
}

// killContainer stops run in of container c (nil: not in the spec) as
// kubelet's killContainer: its preStop hook first, for at most grace, then
// SIGTERM and, after what is left of grace (at least 2 s), SIGKILL. It
// returns once the run has exited.
func (w *worker) killContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, in instance, grace time.Duration) {
	if c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 {
		start := time.Now()
		hctx, cancel := context.WithTimeout(ctx, grace)
		err := w.runHook(hctx, pod, c, in, c.Lifecycle.PreStop)
		timedOut := hctx.Err() != nil
		cancel()
		switch {
		case timedOut && c.Lifecycle.PreStop.Sleep == nil:
			msg := fmt.Sprintf("PreStop hook for Container %q in Pod %q did not complete within the grace period of %s", c.Name, pod.Name, grace)
			w.p.events.Event(pod, corev1.EventTypeWarning, "FailedPreStopHook", msg)
		case err != nil:
			w.p.events.Event(pod, corev1.EventTypeWarning, "FailedPreStopHook", err.Error())
		}
		grace -= time.Since(start)
		grace = max(grace, minGrace)
	}
	w.p.kill(ctx, in.ID, grace)
}

// specContainer returns pod's container (or init container) name, or nil.
func specContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}
