// Package prereq skips a test whose prerequisite is missing — or fails it
// when FEATHER_E2E=required, as CI sets, so that CI never skips silently —
// for packages outside test/ (test/harness has the same rule for the
// end-to-end suite), and finds the test data kept beside the checkout.
package prereq

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RequiredEnv names the variable that turns a missing prerequisite from a
// skip into a failure when it is "required".
const RequiredEnv = "FEATHER_E2E"

// T is the part of testing.TB this package uses.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

// Check skips t with why when ok is false, or fails it under
// FEATHER_E2E=required.
func Check(t T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(RequiredEnv) == "required" {
		t.Fatalf("prerequisite missing (%s=required): %s", RequiredEnv, why)
	}
	t.Skip(why)
}

// Bin is a Check that the program name is on PATH (or is a path that
// exists); it returns the program's path.
func Bin(t T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Check(t, err == nil, fmt.Sprintf("%s not found (Debian package %s)", name, pkg))
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
