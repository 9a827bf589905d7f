package pods

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// fakeClock moves on by exactly what is waited for.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

// TestProbeLoop drives kubelet's probe decisions with a fake clock and a
// scripted checker: when each probe runs and when its result changes.
func TestProbeLoop(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		kind    probeKind
		spec    corev1.Probe
		started bool   // the container has started (its startup probe passed)
		script  string // outcomes of successive runs: + ok, - fail
		// want: the run times (seconds after the container's start) and the
		// result after each run.
		times   []int
		results []result
	}{
		{"readiness defaults", readinessProbe, corev1.Probe{}, true, "+--+",
			[]int{0, 10, 20, 30}, []result{resultSuccess, resultSuccess, resultSuccess, resultSuccess}},
		{"readiness fails after 3", readinessProbe, corev1.Probe{PeriodSeconds: 2, InitialDelaySeconds: 5}, true, "+---+",
			[]int{5, 7, 9, 11, 13}, []result{resultSuccess, resultSuccess, resultSuccess, resultFailure, resultSuccess}},
		{"readiness successThreshold 2", readinessProbe, corev1.Probe{PeriodSeconds: 1, SuccessThreshold: 2}, true, "+-++",
			[]int{0, 1, 2, 3}, []result{resultFailure, resultFailure, resultFailure, resultSuccess}},
		{"liveness failureThreshold 2 holds", livenessProbe, corev1.Probe{PeriodSeconds: 3, FailureThreshold: 2}, true, "-+--",
			[]int{0, 3, 6, 9}, []result{resultSuccess, resultSuccess, resultSuccess, resultFailure}},
		{"startup stops on success", startupProbe, corev1.Probe{PeriodSeconds: 1, FailureThreshold: 30}, false, "--+",
			[]int{0, 1, 2}, []result{resultUnknown, resultUnknown, resultSuccess}},
		{"startup fails", startupProbe, corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2}, false, "--",
			[]int{0, 1}, []result{resultUnknown, resultFailure}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: t0}
			tr := newTracker(tc.kind, &tc.spec, t0)
			var mu sync.Mutex
			stop := make(chan struct{})
			done := make(chan struct{})
			var times []int
			var results []result
			runs := 0
			check := func(context.Context, time.Duration) probeOutcome {
				if runs >= len(tc.script) {
					return probeOutcome{ok: true}
				}
				times = append(times, int(clk.Now().Sub(t0)/time.Second))
				ok := tc.script[runs] == '+'
				runs++
				return probeOutcome{ok: ok}
			}
			report := func(probeOutcome, bool) {
				if len(results) == len(tc.script) {
					return
				}
				mu.Lock()
				results = append(results, tr.result)
				mu.Unlock()
				if len(results) == len(tc.script) {
					close(stop)
				}
			}
			go func() {
				probeLoop(tr, &mu, clk, stop, func() bool { return tc.started }, check, report)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				// A startup probe that succeeded, or a failed liveness
				// probe, is never run again: the loop only idles.
				close(stop)
				<-done
			}
			if fmtInts(times) != fmtInts(tc.times) {
				t.Errorf("runs at %v, want %v", times, tc.times)
			}
			if fmtResults(results) != fmtResults(tc.results) {
				t.Errorf("results %v, want %v", results, tc.results)
			}
		})
	}
}

func fmtInts(xs []int) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(strconv.Itoa(x) + " ")
	}
	return b.String()
}

func fmtResults(rs []result) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(strconv.Itoa(int(r)))
	}
	return b.String()
}

// TestProbeGating: liveness and readiness wait for the start; a liveness
// probe that failed holds; a started container's startup probe stops.
func TestProbeGating(t *testing.T) {
	t0 := time.Now()
	live := newTracker(livenessProbe, &corev1.Probe{InitialDelaySeconds: 10}, t0)
	if live.due(t0.Add(5*time.Second), true) {
		t.Error("liveness due within its initial delay")
	}
	if live.due(t0.Add(11*time.Second), false) {
		t.Error("liveness due before the startup probe passed")
	}
	if !live.due(t0.Add(11*time.Second), true) {
		t.Error("liveness not due")
	}
	live.spec.FailureThreshold = 1
	live.record(false, t0.Add(11*time.Second))
	if live.due(t0.Add(30*time.Second), true) || live.result != resultFailure {
		t.Errorf("failed liveness probe: due again, or result %v", live.result)
	}
	ready := newTracker(readinessProbe, &corev1.Probe{}, t0)
	if ready.result != resultFailure {
		t.Error("readiness starts ready")
	}
	s := &probeSet{trackers: map[probeKind]*tracker{readinessProbe: ready, startupProbe: newTracker(startupProbe, &corev1.Probe{}, t0)}}
	if s.startedNow() || s.readyNow() {
		t.Error("started or ready before the startup probe")
	}
	s.trackers[startupProbe].record(true, t0)
	ready.record(true, t0)
	if !s.startedNow() || !s.readyNow() {
		t.Error("not ready after startup and readiness passed")
	}
	if _, failed := s.failed(); failed {
		t.Error("failed")
	}
}

func TestChecks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			// Kubelet's transport: no keep-alive (Connection: close), no
			// compression asked for.
			if r.Header.Get("X-Probe") != "yes" || r.Host != "example.test" || !strings.HasPrefix(r.UserAgent(), "kube-probe/") ||
				!r.Close || r.Header.Get("Accept-Encoding") != "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte("fine"))
		case "/redirect-away":
			http.Redirect(w, r, "http://192.0.2.1:9/", http.StatusFound)
		case "/redirect-here":
			http.Redirect(w, r, "/fail", http.StatusFound)
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	host, portS, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	c := &corev1.Container{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	tg := target{c: c, host: host}
	get := func(path string, hdr ...corev1.HTTPHeader) *corev1.HTTPGetAction {
		return &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http"), HTTPHeaders: hdr}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		run     func() probeOutcome
		ok      bool
		errored bool
		output  string
	}{
		{"http ok, headers, named port", func() probeOutcome {
			return tg.httpGet(ctx, get("ok", corev1.HTTPHeader{Name: "X-Probe", Value: "yes"}, corev1.HTTPHeader{Name: "Host", Value: "example.test"}), time.Second)
		}, true, false, "fine"},
		{"http 500", func() probeOutcome { return tg.httpGet(ctx, get("/nope"), time.Second) }, false, false, "statuscode: 500"},
		{"http redirect elsewhere is not followed", func() probeOutcome { return tg.httpGet(ctx, get("/redirect-away"), time.Second) }, true, false, ""},
		{"http redirect here is followed", func() probeOutcome { return tg.httpGet(ctx, get("/redirect-here"), time.Second) }, false, false, "statuscode: 500"},
		{"http timeout", func() probeOutcome { return tg.httpGet(ctx, get("/slow"), 100*time.Millisecond) }, false, false, "deadline exceeded"},
		{"http closed port", func() probeOutcome {
			return tg.httpGet(ctx, &corev1.HTTPGetAction{Port: intstr.FromInt(closedPort)}, time.Second)
		}, false, false, "connection refused"},
		{"http unknown port name", func() probeOutcome {
			return tg.httpGet(ctx, &corev1.HTTPGetAction{Port: intstr.FromString("nope")}, time.Second)
		}, false, true, "couldn't find port"},
		{"tcp open", func() probeOutcome {
			return tg.tcpSocket(ctx, &corev1.TCPSocketAction{Port: intstr.FromInt(port)}, time.Second)
		}, true, false, ""},
		{"tcp closed", func() probeOutcome {
			return tg.tcpSocket(ctx, &corev1.TCPSocketAction{Port: intstr.FromInt(closedPort)}, time.Second)
		}, false, false, "connection refused"},
		{"grpc on an HTTP/1 server", func() probeOutcome { return tg.grpcCheck(ctx, &corev1.GRPCAction{Port: int32(port)}, time.Second) }, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.run()
			if o.ok != tc.ok || o.errored != tc.errored || !strings.Contains(o.output, tc.output) {
				t.Fatalf("got %+v, want ok=%v errored=%v output ~ %q", o, tc.ok, tc.errored, tc.output)
			}
		})
	}
}

func TestExecProbesOfUnikernel(t *testing.T) {
	c := &corev1.Container{Name: "uk",
		LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt(80)}}},
		Lifecycle:      &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}}}}
	got := unikernelExecError(c, execProbes(c)).Error()
	want := "container uk is an OSv unikernel, but its Liveness probe, preStop hook uses exec: an OSv unikernel runs one program and has no shell to exec into: not implemented; use httpGet, tcpSocket or grpc against the pod IP"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestExecCache: an exec probe loads its run's task and spec once; a failed
// load is not kept.
func TestExecCache(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails []bool // the outcome of each load, in turn
		gets  int
		loads int // loads made
		errs  int // gets that failed
	}{
		{"loaded once", []bool{false}, 3, 1, 0},
		{"a failed load is tried again", []bool{true, true, false}, 4, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c execCache
			loads, errs := 0, 0
			want := &execTarget{}
			for range tc.gets {
				got, err := c.get(context.Background(), func(context.Context) (*execTarget, error) {
					fail := tc.fails[loads]
					loads++
					if fail {
						return nil, errors.New("no task")
					}
					return want, nil
				})
				switch {
				case err != nil:
					errs++
				case got != want:
					t.Fatalf("got %p, want %p", got, want)
				}
			}
			if loads != tc.loads || errs != tc.errs {
				t.Fatalf("%d loads, %d errors; want %d, %d", loads, errs, tc.loads, tc.errs)
			}
		})
	}
}
