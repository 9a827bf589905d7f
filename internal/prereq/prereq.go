// Package prereq is the one place a test skips for a missing prerequisite
// (root, a program, a device, a fixture): with FEATHER_E2E=required, as
// `make test` and CI run, the skip becomes a failure, so CI never silently
// runs less than it claims.
package prereq

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// OSv is a Check that the real OSv build (../shared/osv beside the
// checkout; see its README) holds version (e.g. "v0.57.0"); it returns that
// version's folder.
func OSv(t T, version string) string {
	t.Helper()
	dir, err := SharedDir()
	if err == nil {
		dir = filepath.Join(dir, "osv", version)
		_, err = os.Stat(filepath.Join(dir, "usr.img"))
	}
	Check(t, err == nil, fmt.Sprintf("real OSv %s (../shared/osv beside the checkout): %v", version, err))
	return dir
}

// SharedDir returns the shared/ folder beside the checkout — or, in a git
// worktree, beside the main checkout — where test data too large or not
// ours to commit is kept.
func SharedDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	tried := []string{filepath.Join(filepath.Dir(root), "shared")}
	// A worktree's .git is a file: "gitdir: MAIN/.git/worktrees/NAME".
	if b, err := os.ReadFile(filepath.Join(root, ".git")); err == nil {
		if gitdir, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: "); ok {
			if main, _, ok := strings.Cut(gitdir, string(filepath.Separator)+".git"+string(filepath.Separator)); ok {
				tried = append(tried, filepath.Join(filepath.Dir(main), "shared"))
			}
		}
	}
	for _, d := range tried {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d, nil
		}
	}
	return "", fmt.Errorf("no shared folder at %s", strings.Join(tried, " or "))
}

// repoRoot returns the top of the Feather checkout, found from the working
// directory (go test runs in the package's folder).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/feather-edge/feather\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Feather repository")
		}
		dir = parent
	}
}
