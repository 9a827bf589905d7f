package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCleanItemPath(t *testing.T) {
	for _, tc := range []struct {
		name, path, want string
	}{
		{name: "key", path: "app.conf", want: "app.conf"},
		{name: "nested", path: "a/b/c", want: "a/b/c"},
		{name: "dot prefix", path: "./a", want: "a"},
		{name: "double slash", path: "a//b", want: "a/b"},
		{name: "hidden file", path: ".env", want: ".env"},
		{name: "dots inside a name", path: "a/..b", want: "a/..b"},
		{name: "empty", path: ""},
		{name: "absolute", path: "/etc/passwd"},
		{name: "escape", path: "../../x"},
		{name: "escape in the middle", path: "a/../../b"},
		{name: "dot dot alone", path: ".."},
		{name: "reserved data link", path: "..data"},
		{name: "reserved prefix", path: "..2026_01_01/x"},
		{name: "only dot", path: "."},
		{name: "NUL", path: "a\x00b"},
		{name: "long element", path: strings.Repeat("x", 256)},
		{name: "long path", path: strings.Repeat("abcdefg/", 600)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cleanItemPath(tc.path)
			if tc.want == "" {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("cleanItemPath(%q) = %q, %v; want an invalid-argument error", tc.path, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("cleanItemPath(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}

func TestPayloadAdd(t *testing.T) {
	for _, tc := range []struct {
		name  string
		paths []string
		ok    bool
	}{
		{name: "distinct", paths: []string{"a", "b", "c/d", "c/e"}, ok: true},
		{name: "twice", paths: []string{"a", "./a"}},
		{name: "file then directory", paths: []string{"a", "a/b"}},
		{name: "directory then file", paths: []string{"a/b", "a"}},
		{name: "prefix of a name is no conflict", paths: []string{"a", "ab/c"}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := payload{}
			var err error
			for _, p := range tc.paths {
				if err = pl.add(p, file{mode: 0o644}); err != nil {
					break
				}
			}
			if tc.ok != (err == nil) {
				t.Fatalf("adding %q: %v; want ok=%v", tc.paths, err, tc.ok)
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not an invalid-argument error", err)
			}
		})
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	v1 := payload{
		"a":   {data: []byte("one"), mode: 0o644},
		"d/b": {data: []byte("two"), mode: 0o600},
	}

	changed, err := writeAtomic(dir, v1, nil, t0)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	equalMaps(t, "v1", readVolume(t, dir), map[string]string{"a": "0644 one", "d/b": "0600 two"})
	first := versions(t, dir)
	if len(first) != 1 || !strings.HasPrefix(first[0], "..2026_03_01_12_00_00.") {
		t.Fatalf("version dirs %q, want one named after the time", first)
	}
	if fi, err := os.Stat(filepath.Join(dir, first[0])); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("version dir mode: %v %v, want 0755", fi.Mode(), err)
	}

	// The same content again: nothing is rewritten.
	changed, err = writeAtomic(dir, v1, nil, t0.Add(1))
	if err != nil || changed {
		t.Fatalf("same content: changed=%v err=%v, want no change", changed, err)
	}
	if got := versions(t, dir); len(got) != 1 || got[0] != first[0] {
		t.Fatalf("same content: versions %q, want %q kept", got, first)
	}

	// A mode change alone is a change.
	v1b := payload{"a": {data: []byte("one"), mode: 0o640}, "d/b": {data: []byte("two"), mode: 0o600}}
	if changed, err = writeAtomic(dir, v1b, nil, t0.Add(2)); err != nil || !changed {
		t.Fatalf("mode change: changed=%v err=%v", changed, err)
	}

	// New content: "d" goes away, "c" comes, the old version is removed.
	v2 := payload{"a": {data: []byte("uno"), mode: 0o644}, "c": {data: []byte("tres"), mode: 0o400}}
	if changed, err = writeAtomic(dir, v2, nil, t0.Add(3)); err != nil || !changed {
		t.Fatalf("second write: changed=%v err=%v", changed, err)
	}
	equalMaps(t, "v2", readVolume(t, dir), map[string]string{"a": "0644 uno", "c": "0400 tres"})
	if _, err := os.Lstat(filepath.Join(dir, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale symlink d: %v, want it removed", err)
	}
	got := versions(t, dir)
	if len(got) != 1 || got[0] == first[0] {
		t.Fatalf("versions after update %q, want one new one", got)
	}
	if target, _ := os.Readlink(filepath.Join(dir, dataLink)); target != got[0] {
		t.Fatalf("%s -> %q, want %q", dataLink, target, got[0])
	}

	// An empty payload empties the volume but keeps ..data.
	if changed, err = writeAtomic(dir, payload{}, nil, t0.Add(4)); err != nil || !changed {
		t.Fatalf("empty write: changed=%v err=%v", changed, err)
	}
	equalMaps(t, "empty", readVolume(t, dir), map[string]string{})
}

func TestWriteAtomicRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	// What a crash in the middle of a write leaves: a half-written version and a temporary link.
	if err := os.MkdirAll(filepath.Join(dir, "..2020_01_01_00_00_00.123", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..2020_01_01_00_00_00.123", filepath.Join(dir, dataTmpLink)); err != nil {
		t.Fatal(err)
	}
	pl := payload{"k": {data: []byte("v"), mode: 0o644}}
	if _, err := writeAtomic(dir, pl, nil, t0); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, dir); len(got) != 1 || strings.HasPrefix(got[0], "..2020") {
		t.Fatalf("versions %q, want only the new one", got)
	}
	// Leftovers next to an unchanged version are removed too.
	if err := os.Mkdir(filepath.Join(dir, "..2020_01_01_00_00_00.456"), 0o755); err != nil {
		t.Fatal(err)
	}
	if changed, err := writeAtomic(dir, pl, nil, t0); err != nil || changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if got := versions(t, dir); len(got) != 1 {
		t.Fatalf("versions %q, want one", got)
	}
}

func TestWriteAtomicRefusesBadPaths(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "vol")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../escaped", "/abs", "a/../../escaped", "..data"} {
		_, err := writeAtomic(dir, payload{p: {data: []byte("x"), mode: 0o644}}, nil, t0)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("path %q: %v, want an invalid-argument error", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(parent, "escaped")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file escaped the volume: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("volume holds %d entries after refused writes, want none", len(entries))
	}
}

func TestWriteAtomicFSGroup(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	gid := int64(4321)
	pl := payload{"secret": {data: []byte("s"), mode: 0o400}, "d/f": {data: []byte("f"), mode: 0o600}}
	if _, err := writeAtomic(dir, pl, &gid, t0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{"secret", 0o440},
		{"d/f", 0o640},
		{"d", os.ModeDir | os.ModeSetgid | 0o755},
	} {
		fi, err := os.Stat(filepath.Join(dir, tc.path))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Gid != uint32(gid) || fi.Mode() != tc.mode {
			t.Errorf("%s: gid %d mode %v, want gid %d mode %v", tc.path, st.Gid, fi.Mode(), gid, tc.mode)
		}
	}
	// Same content with fsGroup is recognised as unchanged.
	if changed, err := writeAtomic(dir, pl, &gid, t0); err != nil || changed {
		t.Fatalf("changed=%v err=%v, want unchanged", changed, err)
	}
}
