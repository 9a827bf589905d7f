package pods

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// probeKind is which of a container's probes.
type probeKind string

const (
	startupProbe   probeKind = "Startup"
	livenessProbe  probeKind = "Liveness"
	readinessProbe probeKind = "Readiness"
)

// result is a probe's state: unknown until it has decided.
type result int

const (
	resultUnknown result = iota
	resultSuccess
	resultFailure
)

// probeOutcome is one run of a probe: its result and what it said (an
// error, the command's output, an HTTP status).
type probeOutcome struct {
	ok bool
	// errored: the probe could not be run at all (kubelet's "probe
	// errored"); it counts as a failure.
	errored bool
	output  string
}

// tracker is kubelet's prober worker for one probe of one container run,
// without the running: what the probe's results so far decide. Its methods
// take the time, so they are tested with any clock.
type tracker struct {
	kind    probeKind
	spec    *corev1.Probe
	started time.Time // the container's start

	result  result
	last    bool // the last run's result
	run     int  // runs in a row with that result
	runs    int  // runs so far
	onHold  bool // liveness/startup failed: nothing until a new run
	lastRun time.Time
}

func newTracker(kind probeKind, spec *corev1.Probe, started time.Time) *tracker {
	t := &tracker{kind: kind, spec: spec, started: started}
	// Kubelet's initial results: not ready until a success, alive until
	// failures, started unknown.
	switch kind {
	case readinessProbe:
		t.result = resultFailure
	case livenessProbe:
		t.result = resultSuccess
	}
	return t
}

func (t *tracker) period() time.Duration { return secondsOr(t.spec.PeriodSeconds, 10) }
func (t *tracker) timeout() time.Duration {
	return secondsOr(t.spec.TimeoutSeconds, 1)
}
func (t *tracker) successThreshold() int { return int(max(t.spec.SuccessThreshold, 1)) }
func (t *tracker) failureThreshold() int {
	if t.spec.FailureThreshold <= 0 {
		return 3
	}
	return int(t.spec.FailureThreshold)
}

func secondsOr(s int32, def int) time.Duration {
	if s <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(s) * time.Second
}

// next says how long after now the probe runs next: the initial delay
// after the container's start first, then every period.
func (t *tracker) next(now time.Time) time.Duration {
	at := t.started.Add(time.Duration(t.spec.InitialDelaySeconds) * time.Second)
	if !t.lastRun.IsZero() {
		at = t.lastRun.Add(t.period())
	}
	return max(at.Sub(now), 0)
}

// due reports whether the probe runs now: not on hold, past its initial
// delay, and (for liveness and readiness) once the container has started.
func (t *tracker) due(now time.Time, started bool) bool {
	if t.onHold {
		return false
	}
	if t.kind == startupProbe && t.result == resultSuccess {
		return false // kubelet stops a startup probe that succeeded
	}
	if t.kind != startupProbe && !started {
		return false
	}
	return now.Sub(t.started) >= time.Duration(t.spec.InitialDelaySeconds)*time.Second
}

// record takes a run's result at now and reports whether the probe's
// result changed. A result is decided after successThreshold successes or
// failureThreshold failures in a row; liveness and startup then hold their
// failure until the container is run anew.
func (t *tracker) record(ok bool, now time.Time) bool {
	t.lastRun = now
	t.runs++
	if t.runs == 1 || ok != t.last {
		t.last, t.run = ok, 1
	} else {
		t.run++
	}
	if ok && t.run < t.successThreshold() || !ok && t.run < t.failureThreshold() {
		return false
	}
	r := resultFailure
	if ok {
		r = resultSuccess
	}
	changed := r != t.result
	t.result = r
	if !ok && (t.kind == livenessProbe || t.kind == startupProbe) {
		t.onHold, t.run = true, 0
	}
	return changed
}

// clock is time for the prober loop; tests use a fake one.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// probeLoop runs one tracker: it waits until the probe is due, runs check
// with the probe's timeout, records the outcome, and calls report with
// every outcome (for events) and changed when the result changed. started
// says whether the container has started (its startup probe succeeded, or
// it has none). mu guards t. It returns when stop is closed.
func probeLoop(t *tracker, mu sync.Locker, clk clock, stop <-chan struct{}, started func() bool,
	check func(ctx context.Context, timeout time.Duration) probeOutcome, report func(o probeOutcome, changed bool)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop
		cancel()
	}()
	for {
		mu.Lock()
		d := t.next(clk.Now())
		mu.Unlock()
		select {
		case <-stop:
			return
		case <-clk.After(d):
		}
		isStarted := started()
		mu.Lock()
		now := clk.Now()
		due := t.due(now, isStarted)
		if !due {
			t.lastRun = now // look again a period later
		}
		mu.Unlock()
		if !due {
			continue
		}
		o := check(ctx, t.timeout())
		select {
		case <-stop:
			return
		default:
		}
		mu.Lock()
		changed := t.record(o.ok, clk.Now())
		mu.Unlock()
		report(o, changed)
	}
}

// probeSet is the probes of one container run and their results.
type probeSet struct {
	id   string // the containerd container (the run)
	stop chan struct{}

	mu       sync.Mutex
	trackers map[probeKind]*tracker
	killing  bool // a liveness or startup failure is being acted on
}

// get returns the result of the run's kind probe, and whether it has one.
func (s *probeSet) get(kind probeKind) (result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.trackers[kind]
	if !ok {
		return resultUnknown, false
	}
	return t.result, true
}

// startedNow: the run's startup probe succeeded, or it has none.
func (s *probeSet) startedNow() bool {
	r, ok := s.get(startupProbe)
	return !ok || r == resultSuccess
}

// readyNow: started, and its readiness probe succeeded, or it has none.
func (s *probeSet) readyNow() bool {
	if !s.startedNow() {
		return false
	}
	r, ok := s.get(readinessProbe)
	return !ok || r == resultSuccess
}

// failed returns the liveness or startup probe that failed, if one did.
func (s *probeSet) failed() (probeKind, bool) {
	for _, k := range []probeKind{startupProbe, livenessProbe} {
		if r, ok := s.get(k); ok && r == resultFailure {
			return k, true
		}
	}
	return "", false
}

// probesOf returns container c's probes by kind.
func probesOf(c *corev1.Container) map[probeKind]*corev1.Probe {
	m := map[probeKind]*corev1.Probe{}
	if c.StartupProbe != nil {
		m[startupProbe] = c.StartupProbe
	}
	if c.LivenessProbe != nil {
		m[livenessProbe] = c.LivenessProbe
	}
	if c.ReadinessProbe != nil {
		m[readinessProbe] = c.ReadinessProbe
	}
	return m
}

// execProbes names the probes and hooks of c that exec into it.
func execProbes(c *corev1.Container) []string {
	var out []string
	for k, p := range probesOf(c) {
		if p.Exec != nil {
			out = append(out, string(k)+" probe")
		}
	}
	slices.Sort(out)
	if l := c.Lifecycle; l != nil {
		if l.PostStart != nil && l.PostStart.Exec != nil {
			out = append(out, "postStart hook")
		}
		if l.PreStop != nil && l.PreStop.Exec != nil {
			out = append(out, "preStop hook")
		}
	}
	return out
}

func unikernelExecError(c *corev1.Container, uses []string) error {
	return fmt.Errorf("container %s is an OSv unikernel, but its %s uses exec: %w; use httpGet, tcpSocket or grpc against the pod IP",
		c.Name, strings.Join(uses, ", "), ErrUnikernelExec)
}
