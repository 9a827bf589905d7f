package scripts

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// earlyReader matches a pipeline stage that may stop reading before its
// writer is done: head, grep -q/-m, awk or sed that exit or quit. Under
// `set -o pipefail` the writer then dies of SIGPIPE, and the pipeline fails
// with 141 at random, depending on how much the writer had left to write
// (make up failed so: `apt-cache … | awk '{ …; exit }'`). Read the whole
// output into a variable and search that instead.
var earlyReader = regexp.MustCompile(`\|\s*(head\b|grep\s+(-[a-zA-Z]*[qm]|--quiet|--max-count)|awk\b.*\bexit\b|sed\b.*[0-9]q\b|sed\s+-n\s+'?[0-9]+p'?\s*;?\s*q)`)

// TestNoEarlyExitPipelines fails for every such pipeline in the repository's
// scripts and Makefile.
func TestNoEarlyExitPipelines(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") && name != ".ci" || name == "_output" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".sh") || name == "Makefile" || filepath.Base(filepath.Dir(path)) == ".ci" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found only %d scripts under %s: %v", len(files), root, files)
	}
	for _, f := range files {
		checkFile(t, root, f)
	}
}

func checkFile(t *testing.T, root, path string) {
	t.Helper()
	fd, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	rel, _ := filepath.Rel(root, path)
	s := bufio.NewScanner(fd)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if earlyReader.MatchString(line) {
			t.Errorf("%s:%d: a pipeline whose reader may exit early (SIGPIPE under pipefail): %s", rel, n, line)
		}
	}
}

// TestEarlyReaderPattern keeps the pattern honest: it must flag the shapes
// that fail and pass the ones that read everything.
func TestEarlyReaderPattern(t *testing.T) {
	for _, tc := range []struct {
		line string
		bad  bool
	}{
		{`KVER=$(apt-cache show x | awk '$1 == "Version:" { print $2; exit }')`, true},
		{`dpkg-query -W x | grep -q 'install ok'`, true},
		{`ls | head -1`, true},
		{`x | grep -m1 foo`, true},
		{`x | sed 5q`, true},
		{`find . -print0 | sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1`, false},
		{`x | awk '{ print $2 }'`, false},
		{`x | grep foo`, false},
		{`a || b`, false},
	} {
		if got := earlyReader.MatchString(tc.line); got != tc.bad {
			t.Errorf("%q: flagged %v, want %v", tc.line, got, tc.bad)
		}
	}
}
