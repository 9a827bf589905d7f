package harness

import (
	"fmt"
	"strings"
	"sync"
)

// Program is the T of a program rather than a test (make up, make
// conformance). Fatalf (and Skip: a program cannot skip a missing
// prerequisite) logs why, hands it to Fail, runs the cleanups — stopping
// whatever the harness started — and calls Exit(1); Errorf (what Env.Close
// reports: leaks) is logged and collected for Finish.
type Program struct {
	// Logf prints a line where the user looks.
	Logf func(format string, args ...any)
	// Fail, if set, records a fatal error (e.g. in a state file).
	Fail func(msg string)
	// Exit ends the program and must not return.
	Exit func(code int)

	mu       sync.Mutex
	cleanups []func()
	errs     []string
}

var _ T = (*Program)(nil)

// Helper does nothing: a program has no test frames to hide.
func (p *Program) Helper() {}

// Cleanup registers f to run in Finish, last registered first.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// Errorf logs an error and keeps it for Finish.
func (p *Program) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.Logf("error: %s", msg)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, msg)
}

// Fatalf logs and records the failure, runs the cleanups and exits 1.
func (p *Program) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.Logf("failed: %s", msg)
	if p.Fail != nil {
		p.Fail(msg)
	}
	p.Finish()
	p.Exit(1)
}

// Skip is fatal: a program cannot skip a missing prerequisite.
func (p *Program) Skip(args ...any) { p.Fatalf("%s", fmt.Sprint(args...)) }

// Finish runs the cleanups, last registered first, once, and returns the
// errors reported until then, joined; "" means none.
func (p *Program) Finish() string {
	p.mu.Lock()
	cleanups := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.errs, "\n")
}
