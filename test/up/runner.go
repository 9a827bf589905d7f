package up

import (
	"fmt"
	"strings"
	"sync"

	"github.com/feather-edge/feather/test/harness"
)

// runner is the harness.T of serve: a program, not a test. Fatalf (and Skip:
// `make up` cannot skip a missing prerequisite) records why, runs the
// cleanups — stopping whatever the harness started — and exits non-zero;
// Errorf (what Env.Close reports: leaks) is logged and collected.
type runner struct {
	logf func(format string, args ...any)
	// fail records a fatal error for up to show; exit ends the program
	// and must not return.
	fail func(msg string)
	exit func(code int)

	mu       sync.Mutex
	cleanups []func()
	errs     []string
}

var _ harness.T = (*runner)(nil)

func (r *runner) Helper() {}

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *runner) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.logf("error: %s", msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, msg)
}

func (r *runner) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.logf("failed: %s", msg)
	r.fail(msg)
	r.finish()
	r.exit(1)
}

func (r *runner) Skip(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// finish runs the cleanups, last registered first, once, and returns the
// errors reported until then, joined; "" means none.
func (r *runner) finish() string {
	r.mu.Lock()
	cleanups := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}
