package pods

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// syncProbes runs the probes of the running app containers of pod (one
// probeSet per run, stopped when the run ends) and acts on liveness and
// startup failures: the container is killed, with kubelet's Killing event,
// and run again per restartPolicy by ensure. The worker goroutine alone
// calls it.
func (w *worker) syncProbes(ctx context.Context, pod *corev1.Pod, insts []instance) {
	v := &view{instances: insts}
	live := map[string]bool{}
	// Main containers and sidecars are probed; other init containers not.
	var probed []*corev1.Container
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; sidecar(c) {
			probed = append(probed, c)
		}
	}
	for i := range pod.Spec.Containers {
		probed = append(probed, &pod.Spec.Containers[i])
	}
	for _, c := range probed {
		probes := probesOf(c)
		runs := v.runs(c.Name)
		if len(probes) == 0 || len(runs) == 0 || !runs[0].Running {
			continue
		}
		in := runs[0]
		live[c.Name] = true
		s := w.probes[c.Name]
		if s != nil && s.id != in.ID {
			close(s.stop)
			s = nil
		}
		if s == nil {
			s = w.startProbes(ctx, pod, c, in, probes)
			w.probes[c.Name] = s
		}
		kind, failed := s.failed()
		s.mu.Lock()
		act := failed && !s.killing
		if act {
			s.killing = true
		}
		s.mu.Unlock()
		if !act {
			continue
		}
		msg := fmt.Sprintf("Container %s failed %s probe", c.Name, strings.ToLower(string(kind)))
		if restartsContainer(pod, c, isSidecar(pod, c.Name), 137) {
			msg += ", will be restarted"
		}
		w.p.events.Event(pod, corev1.EventTypeNormal, "Killing", msg)
		w.log.WithField("container", in.ID).Info(msg)
		grace := podGrace(pod)
		if pr := probes[kind]; pr.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pr.TerminationGracePeriodSeconds) * time.Second
		}
		go func() {
			w.killContainer(ctx, pod, c, in, grace)
			w.wake()
		}()
	}
	for name, s := range w.probes {
		if !live[name] {
			close(s.stop)
			delete(w.probes, name)
		}
	}
}

// stopProbes stops every probe of the pod.
func (w *worker) stopProbes() {
	for name, s := range w.probes {
		close(s.stop)
		delete(w.probes, name)
	}
}

// startProbes starts a probe loop for each of probes of run in of c.
func (w *worker) startProbes(ctx context.Context, pod *corev1.Pod, c *corev1.Container, in instance, probes map[probeKind]*corev1.Probe) *probeSet {
	s := &probeSet{id: in.ID, stop: make(chan struct{}), trackers: map[probeKind]*tracker{}}
	tg := target{c: c, host: w.probeHost(pod), exec: &execCache{}}
	for kind, pr := range probes {
		t := newTracker(kind, pr, in.StartedAt)
		s.trackers[kind] = t
		check := func(ctx context.Context, timeout time.Duration) probeOutcome {
			return w.p.check(ctx, tg, in, pr, timeout)
		}
		report := func(o probeOutcome, changed bool) {
			switch {
			case o.errored:
				w.p.events.Event(pod, corev1.EventTypeWarning, "Unhealthy",
					fmt.Sprintf("%s probe errored and resulted in unknown state: %s", kind, o.output))
			case !o.ok:
				w.p.events.Event(pod, corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", kind, strings.TrimSpace(o.output)))
			}
			if changed {
				w.log.WithField("container", in.ID).WithField("probe", kind).WithField("ok", o.ok).Debug("probe result changed")
				w.wake()
			}
		}
		go probeLoop(t, &s.mu, realClock{}, s.stop, s.startedNow, check, report)
	}
	_ = ctx
	return s
}

// probeHost is where network probes go: the pod IP (the node's for a
// hostNetwork pod).
func (w *worker) probeHost(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return w.p.cfg.HostIP
	}
	if ips := w.ips(); len(ips) > 0 {
		return ips[0]
	}
	return ""
}

// podGrace is the pod's termination grace period (default 30 s).
func podGrace(pod *corev1.Pod) time.Duration {
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// probeState is what the status shows of a container run's probes.
type probeState struct{ started, ready bool }

// probeStates returns the probe results of the current runs, by container.
func (w *worker) probeStates() map[string]probeState {
	out := map[string]probeState{}
	for name, s := range w.probes {
		out[name] = probeState{started: s.startedNow(), ready: s.readyNow()}
	}
	return out
}
