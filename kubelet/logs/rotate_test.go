package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// openRotating opens a rotating log in a fresh temp dir, with a clock that
// advances a millisecond each time it is read.
func openRotating(t *testing.T, rot Rotation) *File {
	t.Helper()
	f, err := OpenRotating(filepath.Join(t.TempDir(), "c", "0.log"), rot)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := testTime
	f.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// logFiles returns the names in the log's directory, sorted.
func logFiles(t *testing.T, f *File) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(f.Path()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func numbered(i int) string { return fmt.Sprintf("line %04d %s", i, strings.Repeat("x", 40)) }

func TestRotationBoundsFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		rot  Rotation
	}{
		{"kubelet's minimum of files", Rotation{MaxSize: 1000, MaxFiles: 2}},
		{"five files", Rotation{MaxSize: 1000, MaxFiles: 5}},
		{"one big file is never rotated", Rotation{MaxSize: 1 << 20, MaxFiles: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := openRotating(t, tc.rot)
			w := f.Stream(Stdout)
			const n = 500
			for i := range n {
				if _, err := w.Write([]byte(numbered(i) + "\n")); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			names := logFiles(t, f)
			if len(names) > tc.rot.MaxFiles {
				t.Errorf("%d files, want at most %d: %q", len(names), tc.rot.MaxFiles, names)
			}
			var total int64
			for _, name := range names {
				fi, err := os.Stat(filepath.Join(filepath.Dir(f.Path()), name))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > tc.rot.MaxSize {
					t.Errorf("%s: %d bytes, over the maximum %d", name, fi.Size(), tc.rot.MaxSize)
				}
				total += fi.Size()
				if name != "0.log" && !strings.HasPrefix(name, "0.log.20240501-1000") {
					t.Errorf("file %q is not named as kubelet names rotated logs", name)
				}
			}
			// What is left reads as the last lines written, in order,
			// none missing between them.
			got := lines(readString(t, f.Path(), Options{Tail: -1}))
			if len(got) == 0 {
				t.Fatal("nothing left to read")
			}
			first := n - len(got)
			for i, l := range got {
				if want := numbered(first+i) + "\n"; l != want {
					t.Fatalf("line %d = %q, want %q", i, l, want)
				}
			}
			if min := tc.rot.MaxSize * int64(tc.rot.MaxFiles-1); total < min && len(names) == tc.rot.MaxFiles {
				t.Errorf("%d bytes kept in %d files, want at least %d", total, len(names), min)
			}
			// Tail reaches across files.
			for _, k := range []int{1, 10, len(got) - 1, len(got), len(got) + 5} {
				want := strings.Join(got[max(0, len(got)-k):], "")
				if s := readString(t, f.Path(), Options{Tail: k}); s != want {
					t.Errorf("tail %d: got %d lines, want %d", k, len(lines(s)), len(lines(want)))
				}
			}
		})
	}
}

// TestRotationSplitsLongLine rotates between the P records of a line and
// the F record that ends it: reading joins them across the files.
func TestRotationSplitsLongLine(t *testing.T) {
	f := openRotating(t, Rotation{MaxSize: MaxLine + 100, MaxFiles: 5})
	out, errs := f.Stream(Stdout), f.Stream(Stderr)
	long := strings.Repeat("a", MaxLine+10)
	for _, s := range []struct {
		w    interface{ Write([]byte) (int, error) }
		text string
	}{{out, "first\n"}, {out, long[:MaxLine+5]}, {errs, "between\n"}, {out, long[MaxLine+5:] + "\n"}, {out, "last\n"}} {
		if _, err := s.w.Write([]byte(s.text)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if names := logFiles(t, f); len(names) < 2 {
		t.Fatalf("not rotated: %q", names)
	}
	if got, want := readString(t, f.Path(), Options{Tail: -1}), "first\nbetween\n"+long+"\nlast\n"; got != want {
		t.Errorf("Read = %.60q (%d bytes), want %.60q (%d bytes)", got, len(got), want, len(want))
	}
	if got, want := readString(t, f.Path(), Options{Tail: 2}), long+"\nlast\n"; got != want {
		t.Errorf("tail 2 = %d bytes, want %d", len(got), len(want))
	}
	if got, want := readString(t, f.Path(), Options{Tail: -1, Since: testTime.Add(2 * time.Millisecond)}), "between\n"+long+"\nlast\n"; got != want {
		t.Errorf("since = %.60q, want %.60q", got, want)
	}
}

// TestRotationReopen counts what an adopted container's log holds already
// towards its size.
func TestRotationReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(strings.Repeat("2024-05-01T10:00:00Z stdout F old\n", 30)), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := OpenRotating(path, Rotation{MaxSize: 1000, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.Stream(Stdout).Write([]byte("new\n"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, err := Rotated(path)
	if err != nil || len(rotated) != 1 {
		t.Fatalf("Rotated = %q, %v; want one file", rotated, err)
	}
	if got := readString(t, path, Options{Tail: 2}); got != "old\nnew\n" {
		t.Errorf("tail 2 = %q", got)
	}
}

func TestRotated(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"0.log", "1.log", "1.log.20240501-100000",
		"0.log.20240501-100005", "0.log.20240501-100005.000000300", "0.log.20240501-100005.000000020",
		"0.log.20240430-235959", "0.log.20240501-100001.gz", "0.log.junk", "0.log.20240501-100009.12",
		".0.log.new", "00.log.20240501-100000",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "0.log.20240501-100008"), 0o755)
	got, err := Rotated(filepath.Join(dir, "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	want := []string{"0.log.20240430-235959", "0.log.20240501-100005", "0.log.20240501-100005.000000020", "0.log.20240501-100005.000000300"}
	if !slices.Equal(got, want) {
		t.Errorf("Rotated = %q, want %q", got, want)
	}
	if got, err := Rotated(filepath.Join(dir, "none", "0.log")); err != nil || got != nil {
		t.Errorf("Rotated of a missing directory = %q, %v", got, err)
	}
}

func TestRotatedNameCollision(t *testing.T) {
	f := openRotating(t, Rotation{MaxSize: 10, MaxFiles: 10})
	f.now = func() time.Time { return testTime } // every rotation in the same nanosecond
	w := f.Stream(Stdout)
	for i := range 4 {
		w.Write(fmt.Appendf(nil, "line %d\n", i))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"0.log", "0.log.20240501-100000", "0.log.20240501-100000.123456789", "0.log.20240501-100000.123456790"}
	if got := logFiles(t, f); !slices.Equal(got, want) {
		t.Errorf("files = %q, want %q", got, want)
	}
	if got := readString(t, f.Path(), Options{Tail: -1}); got != "line 0\nline 1\nline 2\nline 3\n" {
		t.Errorf("Read = %q", got)
	}
}

// TestFollowAcrossRotation follows a log while it is rotated many times:
// every line comes out once, in order.
func TestFollowAcrossRotation(t *testing.T) {
	fastPoll(t)
	f := openRotating(t, Rotation{MaxSize: 2000, MaxFiles: 1000})
	w := f.Stream(Stdout)
	w.Write([]byte(numbered(0) + "\n"))
	done := make(chan struct{})
	var out syncBuffer
	res := follow(t, t.Context(), f.Path(), Options{Tail: -1}, done, &out)
	const n = 2000
	for i := 1; i < n; i++ {
		w.Write([]byte(numbered(i) + "\n"))
	}
	if r, _ := Rotated(f.Path()); len(r) < 50 {
		t.Fatalf("%d rotations, want many", len(r))
	}
	defer func() { // on failure, say which lines are missing
		if !t.Failed() {
			return
		}
		prev := -1
		for _, l := range lines(out.String()) {
			var i int
			fmt.Sscanf(l, "line %d", &i)
			if i != prev+1 {
				t.Logf("after %d: %d", prev, i)
			}
			prev = i
		}
	}()
	waitFor(t, "every line", func() bool { return strings.Count(out.String(), "\n") >= n })
	close(done)
	if err := result(t, res); err != nil {
		t.Fatal(err)
	}
	got := lines(out.String())
	if len(got) != n {
		t.Fatalf("%d lines, want %d", len(got), n)
	}
	for i, l := range got {
		if l != numbered(i)+"\n" {
			t.Fatalf("line %d = %q", i, l)
		}
	}
}

// TestFollowFallsBehind follows a log that is rotated away under a slow
// reader: it goes on with the oldest file left and ends with the newest
// lines, in order.
func TestFollowFallsBehind(t *testing.T) {
	fastPoll(t)
	f := openRotating(t, Rotation{MaxSize: 1000, MaxFiles: 2})
	w := f.Stream(Stdout)
	w.Write([]byte(numbered(0) + "\n"))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := newGate()
	res := make(chan error, 1)
	go func() { res <- Read(ctx, f.Path(), Options{Tail: -1, Follow: true}, nil, pw) }()
	const n = 300
	for i := 1; i < n; i++ {
		w.Write([]byte(numbered(i) + "\n"))
	}
	pr.open() // the reader may go on now: most of what it follows is gone
	waitFor(t, "the last line", func() bool { return strings.Contains(pw.String(), numbered(n-1)) })
	cancel()
	<-res
	got := lines(pw.String())
	prev := -1
	for _, l := range got {
		var i int
		if _, err := fmt.Sscanf(l, "line %d", &i); err != nil || i <= prev {
			t.Fatalf("line %q after line %d", l, prev)
		}
		prev = i
	}
}

// gate is a writer whose first Write blocks until it is opened.
type gate struct {
	ch   chan struct{}
	once sync.Once
	syncBuffer
}

func newGate() (*gate, *gate) { g := &gate{ch: make(chan struct{})}; return g, g }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

func (g *gate) Write(p []byte) (int, error) {
	<-g.ch
	return g.syncBuffer.Write(p)
}

func TestRotationValidate(t *testing.T) {
	for _, tc := range []struct {
		rot Rotation
		ok  bool
	}{
		{DefaultRotation, true},
		{Rotation{MaxSize: 1, MaxFiles: 2}, true},
		{Rotation{MaxSize: 0, MaxFiles: 5}, false},
		{Rotation{MaxSize: 10, MaxFiles: 1}, false},
	} {
		if err := tc.rot.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v", tc.rot, err)
		}
	}
}

func TestReadOneStream(t *testing.T) {
	for _, tc := range []struct {
		stream StreamType
		want   string
	}{
		{"", "err one\nhello world\nlast out\nerr two\nno newline"},
		{Stdout, "hello world\nlast out\nno newline"},
		{Stderr, "err one\nerr two\n"},
	} {
		if got := readString(t, "testdata/partial.log", Options{Tail: -1, Stream: tc.stream}); got != tc.want {
			t.Errorf("stream %q: %q, want %q", tc.stream, got, tc.want)
		}
	}
}
