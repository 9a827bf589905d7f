package guestinit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"bin/prog", 0o755}, {"top", 0o755}, {"data", 0o644}} {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, prog string
		env        []string
		cwd        string
		want       string // "" for not found
	}{
		{"absolute", filepath.Join(dir, "top"), nil, "/", filepath.Join(dir, "top")},
		{"relative to cwd", "bin/prog", nil, dir, filepath.Join(dir, "bin/prog")},
		{"bare name in PATH", "prog", []string{"PATH=/nonexistent:" + filepath.Join(dir, "bin")}, "/", filepath.Join(dir, "bin/prog")},
		{"bare name, relative PATH entry", "prog", []string{"PATH=bin"}, dir, filepath.Join(dir, "bin/prog")},
		{"bare name not in PATH", "top", []string{"PATH=" + filepath.Join(dir, "bin")}, "/", ""},
		{"not executable", filepath.Join(dir, "data"), nil, "/", ""},
		{"directory", filepath.Join(dir, "bin"), nil, "/", ""},
		{"missing", "/nonexistent/prog", nil, "/", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.prog, tc.env, tc.cwd)
			if tc.want == "" {
				var nf notFoundError
				if !errors.As(err, &nf) {
					t.Fatalf("lookPath(%q) = %q, %v; want a notFoundError", tc.prog, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("lookPath(%q) = %q, %v; want %q", tc.prog, got, err, tc.want)
			}
		})
	}
}

func TestMainDispatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		want     string
		wantCode int
	}{
		{"by argv0", []string{"/hello"}, Hello, 0},
		{"by first argument", []string{"/usr/bin/guest-init", "exit", "3"}, "", 3},
		{"unknown", []string{"guest-init", "frob"}, "usage: guest-init PROGRAM", 2},
		{"no args", nil, "usage: guest-init PROGRAM", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := Main(tc.args, &out)
			if code != tc.wantCode || !strings.HasPrefix(out.String(), tc.want) {
				t.Errorf("Main(%q) = %d, output %q; want %d, output starting %q", tc.args, code, out.String(), tc.wantCode, tc.want)
			}
		})
	}
}
