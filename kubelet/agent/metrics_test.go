package agent

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
)

func TestAgentMetrics(t *testing.T) {
	running := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	running.UID = "a"
	pending := &corev1.Pod{}
	pending.UID = "b"
	m := newAgentMetrics(func(context.Context) ([]*corev1.Pod, error) { return []*corev1.Pod{running, pending}, nil })

	t0 := time.Unix(100, 0)
	m.podSeen(running, t0)
	m.podSeen(running, t0.Add(time.Second)) // an update: still first seen at t0
	m.podStatus(&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, t0.Add(time.Second))
	m.podStatus(running, t0.Add(3*time.Second))
	m.podStatus(running, t0.Add(9*time.Second)) // observed once
	m.pullObserved(1500*time.Millisecond, nil)
	m.pullObserved(time.Second, errors.New("no such image"))

	ic := m.interceptors()
	if len(ic) != 2 {
		t.Fatalf("%d dial options", len(ic))
	}
	// Exercise the unary counting through a call that fails, and one that
	// is NotFound (an answer, not counted).
	fail := func(code codes.Code) grpc.UnaryInvoker {
		return func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			return status.Error(code, "x")
		}
	}
	unary := unaryOf(m)
	_ = unary(context.Background(), "/containerd.services.tasks.v1.Tasks/Start", nil, nil, nil, fail(codes.Unavailable))
	_ = unary(context.Background(), "/containerd.services.tasks.v1.Tasks/Get", nil, nil, nil, fail(codes.NotFound))

	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"feather_pod_start_duration_seconds_count 1\n",
		"feather_pod_start_duration_seconds_sum 3\n",
		`feather_image_pull_duration_seconds_count{result="success"} 1`,
		`feather_image_pull_duration_seconds_count{result="error"} 1`,
		`feather_containerd_errors_total{code="Unavailable",method="containerd.services.tasks.v1.Tasks/Start"} 1`,
		`feather_pods{phase="Running"} 1`,
		`feather_pods{phase="Pending"} 1`,
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "Tasks/Get") {
		t.Error("a NotFound answer was counted as an error")
	}
}

// TestWatchBoot: the VM boot histogram gets what the shim recorded once
// it is there, by boot mode and accelerator; a VM whose QEMU is gone is not
// waited for.
func TestWatchBoot(t *testing.T) {
	m := newAgentMetrics(func(context.Context) ([]*corev1.Pod, error) { return nil, nil })
	m.proc = t.TempDir()
	cwd := filepath.Join(m.proc, "77", "cwd")
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		m.watchBoot(context.Background(), 77)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("watchBoot returned before the boot was recorded")
	case <-time.After(3 * bootPoll): // the watcher must still be polling: this is the assertion's window
	}
	if err := os.WriteFile(filepath.Join(cwd, vmBootFile), []byte(`{"mode":"direct","accel":"tcg","seconds":0.31}`), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchBoot did not see the boot record")
	}
	gone := make(chan struct{})
	go func() {
		m.watchBoot(context.Background(), 78) // no such process
		close(gone)
	}()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("watchBoot waits for a QEMU that is gone")
	}
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`feather_vm_boot_duration_seconds_count{accel="tcg",mode="direct"} 1`,
		`feather_vm_boot_duration_seconds_sum{accel="tcg",mode="direct"} 0.31`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}
