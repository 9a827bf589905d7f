// Package prereq is the one place a test skips for a missing prerequisite
// (root, a program, a device, a fixture): with FEATHER_E2E=required, as
// `make test` and CI run, the skip becomes a failure, so CI never silently
// runs less than it claims.
package prereq

import (
	"os"
	"os/exec"
)

// Env names the variable that turns a missing prerequisite from a skip
// into a failure.
const Env = "FEATHER_E2E"

// T is the part of testing.TB a prerequisite needs.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

// Required reports whether missing prerequisites fail the test.
func Required() bool { return os.Getenv(Env) == "required" }

// Check skips t (or fails it, when FEATHER_E2E=required) with why when ok is
// false.
func Check(t T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if Required() {
		t.Fatalf("prerequisite missing (%s=required): %s", Env, why)
		return
	}
	t.Skip(why)
}

// Root is a Check that the test runs as root.
func Root(t T) {
	t.Helper()
	Check(t, os.Geteuid() == 0, "needs root")
}

// Program is a Check that name is found in PATH (or is an executable path);
// hint says how to install it. It returns the program's path.
func Program(t T, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Check(t, err == nil, name+" not found: "+hint)
	return p
}
