package harness

import (
	"runtime"
	"slices"
	"testing"
)

// TestProgramFatalf checks that the Program runs the cleanups,
// last first, records the failure and exits 1 without returning.
func TestProgramFatalf(t *testing.T) {
	var order []string
	var failed string
	code := -1
	r := &Program{
		Logf: func(string, ...any) {},
		Fail: func(msg string) { failed = msg },
		Exit: func(c int) { code = c; runtime.Goexit() },
	}
	r.Cleanup(func() { order = append(order, "first") })
	r.Cleanup(func() {
		order = append(order, "second")
		r.Errorf("leaked process %d", 42)
	})
	done := make(chan bool)
	go func() {
		defer close(done)
		r.Fatalf("start %s: %v", "etcd", "boom")
		done <- true // not reached: Fatalf does not return
	}()
	if returned := <-done; returned {
		t.Fatal("Fatalf returned")
	}
	if code != 1 || failed != "start etcd: boom" || !slices.Equal(order, []string{"second", "first"}) {
		t.Errorf("exit code %d, failure %q, cleanups %v", code, failed, order)
	}
	if errs := r.Finish(); errs != "leaked process 42" {
		t.Errorf("finish after Fatalf = %q (cleanups must run once)", errs)
	}
	if len(order) != 2 {
		t.Errorf("cleanups ran again: %v", order)
	}
}
