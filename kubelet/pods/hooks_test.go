package pods

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestRunHook(t *testing.T) {
	var ua string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua = r.UserAgent()
		w.WriteHeader(http.StatusInternalServerError) // a hook takes any status
	}))
	defer srv.Close()
	host, portS, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	p := &Provider{cfg: Config{HostIP: host, Runtimes: map[string]string{"runc": "io.containerd.runc.v2"}}}
	w := &worker{p: p}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1"}, Spec: corev1.PodSpec{HostNetwork: true}}
	c := &corev1.Container{Name: "c"}
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		h       corev1.LifecycleHandler
		timeout time.Duration
		wantErr string
		took    time.Duration // at least
	}{
		{"http, any status", corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/x", Port: intstr.FromInt(port)}}, time.Second, "", 0},
		{"http, closed port", corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/x", Port: intstr.FromInt(closedPort)}}, time.Second,
			`HTTP lifecycle hook (/x) for Container "c" in Pod "p_ns(u1)" failed - error: `, 0},
		{"sleep", corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}, 5 * time.Second, "", time.Second},
		{"sleep cut by the grace period", corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 60}}, 200 * time.Millisecond, "", 200 * time.Millisecond},
		{"exec into a unikernel", corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, time.Second, "no shell to exec into", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now() // before the deadline is set: the grace period runs from here
			hctx, cancel := context.WithTimeout(ctx, tc.timeout)
			defer cancel()
			err := w.runHook(hctx, pod, c, instance{Name: "c", Runtime: "io.containerd.osv.v1"}, &tc.h)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if d := time.Since(start); d < tc.took || d > tc.took+2*time.Second {
				t.Errorf("took %s, want %s", d, tc.took)
			}
		})
	}
	if !strings.HasPrefix(ua, "kube-lifecycle/") {
		t.Errorf("User-Agent %q", ua)
	}
}

// TestAfterStart: postStart runs after every start of a container — the
// first, a restart, the restart of an in-place resize (its new run is the
// latest and runs) — and only on a run that runs.
func TestAfterStart(t *testing.T) {
	var (
		mu   sync.Mutex
		hits []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path)
		mu.Unlock()
	}))
	defer srv.Close()
	host, portS, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	p := &Provider{cfg: Config{HostIP: host, Runtimes: map[string]string{"runc": "io.containerd.runc.v2"}}}
	w := &worker{p: p, hookCtx: context.Background()}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1"}, Spec: corev1.PodSpec{HostNetwork: true}}
	hooked := &corev1.Container{Name: "c", Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/started", Port: intstr.FromInt(port)}}}}
	run := func(attempt int, running bool) instance {
		return instance{Name: "c", Attempt: attempt, Running: running, Exited: !running, Runtime: "io.containerd.runc.v2"}
	}
	for _, tc := range []struct {
		name  string
		c     *corev1.Container
		insts []instance
		hooks int
	}{
		{"first start", hooked, []instance{run(0, true)}, 1},
		{"restart of a resize", hooked, []instance{run(0, false), run(1, true)}, 1},
		{"the new run has exited already", hooked, []instance{run(1, false), run(0, false)}, 0},
		{"no run", hooked, nil, 0},
		{"no postStart", &corev1.Container{Name: "c"}, []instance{run(0, true)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			hits = nil
			mu.Unlock()
			if err := w.afterStart(pod, tc.c, tc.insts); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(hits) != tc.hooks {
				t.Errorf("postStart ran %d times (%q), want %d", len(hits), hits, tc.hooks)
			}
		})
	}
}
