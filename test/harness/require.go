package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/feather-edge/feather/internal/prereq"
)

// Prerequisite skips t (or fails it, when FEATHER_E2E=required) with why when
// ok is false: prereq.Check, the one rule for every test of the project.
func Prerequisite(t T, ok bool, why string) {
	t.Helper()
	prereq.Check(t, ok, why)
}

// RequiresRoot is a Prerequisite that the test runs as root.
func RequiresRoot(t T) {
	t.Helper()
	Prerequisite(t, os.Geteuid() == 0, "needs root")
}

// RequiresBin is a Prerequisite that the named program was built, and returns
// its path.
func RequiresBin(t T, name string) string {
	t.Helper()
	p, err := Bin(name)
	Prerequisite(t, err == nil, fmt.Sprint(err))
	return p
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// RepoRoot returns the top of the Feather checkout, found from the working
// directory (go test runs in the package's directory).
func RepoRoot() (string, error) {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isFeatherMod(b) {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = errors.New("not inside the Feather repository (no go.mod of github.com/feather-edge/feather above the working directory)")
				return
			}
			dir = parent
		}
	})
	return rootDir, rootErr
}

func isFeatherMod(gomod []byte) bool {
	const want = "module github.com/feather-edge/feather\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}

// Bin returns the path of a program the project builds: Feather's own in bin/,
// pinned third-party tools in _output/bin/.
func Bin(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	for _, dir := range []string{"bin", filepath.Join("_output", "bin")} {
		p := filepath.Join(root, dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not built: run `make deps` (third-party tools) or `make build` (Feather's own) first", name)
}
