package conformance

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/feather-edge/feather/test/harness"
)

// runner is the harness.T of a program: Fatalf (and Skip: a run cannot skip
// a missing prerequisite) runs the cleanups — stopping whatever the harness
// started — and exits 1; Errorf (what Env.Close reports: leaks) is printed
// and collected.
type runner struct {
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
	logf("error: %s", msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, msg)
}

func (r *runner) Fatalf(format string, args ...any) {
	logf("failed: %s", fmt.Sprintf(format, args...))
	r.finish()
	os.Exit(1)
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
