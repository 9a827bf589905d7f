package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// atomicWrite lays files out as Kubernetes' atomic writer does: a
// timestamped directory, "..data" pointing at it, and a link per top-level
// name.
func atomicWrite(t *testing.T, dir, stamp string, files map[string]string) {
	t.Helper()
	ts := filepath.Join(dir, stamp)
	for name, content := range files {
		p := filepath.Join(ts, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, atomicData)); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		top := strings.SplitN(name, "/", 2)[0]
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(atomicData, top), link); err != nil {
			t.Fatal(err)
		}
	}
}

// tree lists dst's files with their contents.
func tree(t *testing.T, dst string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if errors.Is(err, os.ErrNotExist) || strings.HasPrefix(filepath.Base(p), ".tmp-") {
			return nil // a file the refresh is renaming into place right now
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s is a link", p)
		}
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dst, p)
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSyncCopy(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	if isAtomicDir(src) {
		t.Fatal("an empty directory taken for an atomic writer's")
	}
	atomicWrite(t, src, "..2026_12_02_10_00_00.1", map[string]string{"a": "1", "sub/b": "2"})
	if !isAtomicDir(src) {
		t.Fatal("not recognised")
	}
	version, err := copyShare(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dst); len(got) != 2 || got["a"] != "1" || got[filepath.Join("sub", "b")] != "2" {
		t.Fatalf("copy = %v", got)
	}

	// An update: a new timestamped directory, "a" changed, "sub" gone, "c" new.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	RefreshInterval = 20 * time.Millisecond
	done := make(chan struct{})
	go func() { refresh(ctx, src, dst, version); close(done) }()
	if err := os.Remove(filepath.Join(src, "sub")); err != nil {
		t.Fatal(err)
	}
	atomicWrite(t, src, "..2026_12_02_10_01_00.2", map[string]string{"a": "one", "c": "3"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := tree(t, dst)
		var names []string
		for n := range got {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 2 && got["a"] == "one" && got["c"] == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy after the update = %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}
