package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func readString(t *testing.T, path string, opts Options) string {
	t.Helper()
	var out bytes.Buffer
	if err := Read(t.Context(), path, opts, nil, &out); err != nil {
		t.Fatalf("Read(%s, %+v): %v", path, opts, err)
	}
	return out.String()
}

func TestRead(t *testing.T) {
	all := Options{Tail: -1}
	for _, tc := range []struct {
		name string
		file string
		opts Options
		want string
	}{
		{"all", "basic.log", all, "one\ntwo\nthree\n\nfive\n"},
		{"tail 2", "basic.log", Options{Tail: 2}, "\nfive\n"},
		{"tail 0", "basic.log", Options{Tail: 0}, ""},
		{"tail past start", "basic.log", Options{Tail: 10}, "one\ntwo\nthree\n\nfive\n"},
		{"since", "basic.log", Options{Tail: -1, Since: at("2024-05-01T10:00:02Z")}, "three\n\nfive\n"},
		{"since is inclusive", "basic.log", Options{Tail: -1, Since: at("2024-05-01T10:00:01Z")}, "two\nthree\n\nfive\n"},
		{"since after all", "basic.log", Options{Tail: -1, Since: at("2024-05-02T00:00:00Z")}, ""},
		{"tail then since", "basic.log", Options{Tail: 2, Since: at("2024-05-01T10:00:03.5Z")}, "five\n"},
		{"timestamps", "basic.log", Options{Tail: 3, Timestamps: true},
			"2024-05-01T10:00:02.000000003Z three\n2024-05-01T10:00:03.000000000Z \n2024-05-01T10:00:04.000000000Z five\n"},
		{"limit bytes cuts a line", "basic.log", Options{Tail: -1, LimitBytes: 6}, "one\ntw"},
		{"limit bytes at a line end", "basic.log", Options{Tail: -1, LimitBytes: 8}, "one\ntwo\n"},
		{"limit bytes past the end", "basic.log", Options{Tail: -1, LimitBytes: 1000}, "one\ntwo\nthree\n\nfive\n"},
		{"limit bytes counts timestamps", "basic.log", Options{Tail: -1, Timestamps: true, LimitBytes: 40},
			"2024-05-01T10:00:00.100000000Z one\n2024-"},

		{"partial lines joined per stream", "partial.log", all, "err one\nhello world\nlast out\nerr two\nno newline"},
		{"partial tail 1 is the unended line", "partial.log", Options{Tail: 1}, "no newline"},
		{"partial tail 2 starts inside stderr's line", "partial.log", Options{Tail: 2}, "err two\nno newline"},
		{"partial tail 3", "partial.log", Options{Tail: 3}, "last out\nerr two\nno newline"},
		{"partial tail 4", "partial.log", Options{Tail: 4}, "hello world\nlast out\nerr two\nno newline"},
		{"partial timestamps are of first records", "partial.log", Options{Tail: -1, Timestamps: true},
			"2024-05-01T10:00:01.000000000Z err one\n" +
				"2024-05-01T10:00:00.000000000Z hello world\n" +
				"2024-05-01T10:00:05.000000000Z last out\n" +
				"2024-05-01T10:00:04.000000000Z err two\n" +
				"2024-05-01T10:00:07.000000000Z no newline"},
		{"partial since by first record", "partial.log", Options{Tail: -1, Since: at("2024-05-01T10:00:01Z")},
			"err one\nlast out\nerr two\nno newline"},

		{"malformed lines skipped", "malformed.log", all, "good one\ngood two\ngood three\ngood four\n"},
		{"malformed tail", "malformed.log", Options{Tail: 2}, "good three\ngood four\n"},
		{"empty file", "empty.log", all, ""},
		{"empty file tail", "empty.log", Options{Tail: 1}, ""},
		{"unterminated last record", "truncated.log", all, "whole\ncut sh\n"},
		{"unterminated last record tail", "truncated.log", Options{Tail: 1}, "cut sh\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readString(t, filepath.Join("testdata", tc.file), tc.opts); got != tc.want {
				t.Errorf("Read:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestReadTailIsSuffix checks that Tail n shows the last n lines of what the
// whole log shows, for every n, on the fixtures and on a generated log with
// interleaved long lines that spans several tail blocks.
func TestReadTailIsSuffix(t *testing.T) {
	paths := []string{"testdata/basic.log", "testdata/partial.log", "testdata/malformed.log", "testdata/truncated.log", "testdata/empty.log", generated(t)}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			whole := lines(readString(t, path, Options{Tail: -1}))
			step := max(1, len(whole)/40)
			for n := 0; n <= len(whole)+1; n += step {
				want := strings.Join(whole[max(0, len(whole)-n):], "")
				if got := readString(t, path, Options{Tail: n}); got != want {
					t.Fatalf("tail %d:\n got %.200q\nwant %.200q", n, got, want)
				}
			}
		})
	}
}

// generated writes a log of both streams with lines of all lengths, some
// cut into P records, and an unended line on each stream at the end.
func generated(t *testing.T) string {
	f, err := Open(filepath.Join(t.TempDir(), "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ws := []io.WriteCloser{f.Stream(Stdout), f.Stream(Stderr)}
	for i := range 400 {
		n := rng.IntN(200)
		if rng.IntN(10) == 0 {
			n = rng.IntN(3 * MaxLine)
		}
		line := fmt.Sprintf("%d %s\n", i, strings.Repeat("abcdefgh"[i%8:i%8+1], n))
		w := ws[rng.IntN(2)]
		for _, c := range chunks(line, 1+rng.IntN(len(line))) {
			if _, err := w.Write([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ws[0].Write([]byte("unended out"))
	ws[1].Write([]byte("unended err"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Path()
}

// lines splits s after each newline; an unterminated end is a line too.
func lines(s string) []string {
	if s == "" {
		return nil
	}
	l := strings.SplitAfter(s, "\n")
	if l[len(l)-1] == "" {
		l = l[:len(l)-1]
	}
	return l
}

func TestReadJoinsLongLines(t *testing.T) {
	f := openTest(t)
	out, errs := f.Stream(Stdout), f.Stream(Stderr)
	long := strings.Repeat("o", 2*MaxLine+7)
	other := strings.Repeat("e", MaxLine+1)
	// Interleave the P records of the two streams.
	for _, w := range []struct {
		w io.Writer
		s string
	}{{out, long[:MaxLine+10]}, {errs, other[:MaxLine+1]}, {out, long[MaxLine+10:] + "\n"}, {errs, "\n"}} {
		if _, err := w.w.Write([]byte(w.s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := readString(t, f.Path(), Options{Tail: -1}), long+"\n"+other+"\n"; got != want {
		t.Errorf("Read = %d bytes, want %q (%d bytes) and %q (%d bytes)", len(got), long[:5], len(long), other[:5], len(other))
	}
	if got, want := readString(t, f.Path(), Options{Tail: 1}), other+"\n"; got != want {
		t.Errorf("Read tail 1 = %d bytes, want %d", len(got), len(want))
	}
}

// TestReadRecordLongerThanBuffer reads records longer than the reader's
// buffer and the tail block, which a writer with a larger line limit than
// ours may leave.
func TestReadRecordLongerThanBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	big := strings.Repeat("b", 100<<10)
	data := "2024-05-01T10:00:00Z stdout F small\n2024-05-01T10:00:01Z stderr F " + big + "\n2024-05-01T10:00:02Z stdout F after\n"
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tail int
		want string
	}{
		{-1, "small\n" + big + "\nafter\n"},
		{2, big + "\nafter\n"},
		{1, "after\n"},
	} {
		if got := readString(t, path, Options{Tail: tc.tail}); got != tc.want {
			t.Errorf("tail %d: got %d bytes, want %d", tc.tail, len(got), len(tc.want))
		}
	}
}

func TestReadVeryLongLineInPieces(t *testing.T) {
	f := openTest(t)
	w := f.Stream(Stdout)
	huge := strings.Repeat("h", maxJoin+MaxLine+3)
	if _, err := w.Write([]byte(huge + "\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := readString(t, f.Path(), Options{Tail: -1, Timestamps: true})
	want := testTime.Format(TimestampFormat) + " " + huge + "\n"
	if got != want {
		t.Errorf("Read = %d bytes, want %d bytes", len(got), len(want))
	}
}

func TestReadMissingFile(t *testing.T) {
	err := Read(t.Context(), filepath.Join(t.TempDir(), "0.log"), Options{Tail: -1}, nil, io.Discard)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read = %v, want fs.ErrNotExist", err)
	}
	if _, err := NewReader(t.Context(), filepath.Join(t.TempDir(), "0.log"), Options{Tail: -1}, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewReader = %v, want fs.ErrNotExist", err)
	}
}

// syncBuffer is a bytes.Buffer that a follower writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fastPoll makes followers look for new lines often, for the test.
func fastPoll(t *testing.T) {
	old := pollInterval
	pollInterval = 2 * time.Millisecond
	t.Cleanup(func() { pollInterval = old })
}

// atEnd returns a channel closed once a follower first waits at the end of
// its file.
func atEnd(t *testing.T) <-chan struct{} {
	ch := make(chan struct{})
	var once sync.Once
	testHookWait = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { testHookWait = nil })
	return ch
}

// follow starts Read with Follow in a goroutine; the returned channel gets
// its result.
func follow(t *testing.T, ctx context.Context, path string, opts Options, done <-chan struct{}, out io.Writer) <-chan error {
	opts.Follow = true
	res := make(chan error, 1)
	go func() { res <- Read(ctx, path, opts, done, out) }()
	return res
}

func result(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return")
		return nil
	}
}

func TestFollow(t *testing.T) {
	fastPoll(t)
	f := openTest(t)
	w := f.Stream(Stdout)
	w.Write([]byte("before\n"))
	done := make(chan struct{})
	var out syncBuffer
	res := follow(t, t.Context(), f.Path(), Options{Tail: -1}, done, &out)

	waitFor(t, "the first line", func() bool { return out.String() == "before\n" })
	w.Write([]byte("after\n"))
	waitFor(t, "the appended line", func() bool { return out.String() == "before\nafter\n" })
	// A line cut into P records shows once it is whole.
	long := strings.Repeat("l", MaxLine+5)
	w.Write([]byte(long[:MaxLine+2]))
	w.Write([]byte(long[MaxLine+2:] + "\n"))
	waitFor(t, "the long line", func() bool { return out.String() == "before\nafter\n"+long+"\n" })
	// The container exits in mid-line: the rest shows once done closes.
	w.Write([]byte("last words"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	close(done)
	if err := result(t, res); err != nil {
		t.Fatalf("Read = %v", err)
	}
	if got, want := out.String(), "before\nafter\n"+long+"\nlast words"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestFollowTailZeroShowsOnlyNewLines(t *testing.T) {
	fastPoll(t)
	f := openTest(t)
	w := f.Stream(Stderr)
	w.Write([]byte("old\n"))
	done := make(chan struct{})
	var out syncBuffer
	waiting := atEnd(t)
	res := follow(t, t.Context(), f.Path(), Options{Tail: 0, Timestamps: true}, done, &out)
	select {
	case <-waiting: // it has passed "old"
	case <-time.After(10 * time.Second):
		t.Fatal("follower did not reach the end")
	}
	w.Write([]byte("new\n"))
	want := testTime.Format(TimestampFormat) + " new\n"
	waitFor(t, "the new line", func() bool { return out.String() == want })
	close(done)
	if err := result(t, res); err != nil {
		t.Fatalf("Read = %v", err)
	}
	if got := out.String(); got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestFollowWaitsForWholeRecord(t *testing.T) {
	fastPoll(t)
	path := filepath.Join(t.TempDir(), "0.log")
	raw, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// One record and half of the next, as a reader may find a writer.
	raw.WriteString("2024-05-01T10:00:00Z stdout F first\n2024-05-01T10:00:01Z std")
	done := make(chan struct{})
	var out syncBuffer
	res := follow(t, t.Context(), path, Options{Tail: -1}, done, &out)
	// The follower reads in order, so once it shows the first line it has
	// seen the half record too.
	waitFor(t, "the first line", func() bool { return out.String() == "first\n" })
	raw.WriteString("out F second\n")
	waitFor(t, "the second line", func() bool { return out.String() == "first\nsecond\n" })
	close(done)
	if err := result(t, res); err != nil {
		t.Fatalf("Read = %v", err)
	}
	if got := out.String(); got != "first\nsecond\n" {
		t.Errorf("output = %q", got)
	}
}

func TestFollowEndsWithContext(t *testing.T) {
	fastPoll(t)
	f := openTest(t)
	f.Stream(Stdout).Write([]byte("x\n"))
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	res := follow(t, ctx, f.Path(), Options{Tail: -1}, nil, &out)
	waitFor(t, "the line", func() bool { return out.String() == "x\n" })
	cancel()
	if err := result(t, res); !errors.Is(err, context.Canceled) {
		t.Errorf("Read = %v, want context.Canceled", err)
	}
}

func TestFollowDoneAlreadyClosed(t *testing.T) {
	f := openTest(t)
	f.Stream(Stdout).Write([]byte("a\nb"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	close(done)
	var out syncBuffer
	if err := result(t, follow(t, t.Context(), f.Path(), Options{Tail: -1}, done, &out)); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "a\nb" {
		t.Errorf("output = %q", got)
	}
}

func TestFollowLimitBytes(t *testing.T) {
	fastPoll(t)
	f := openTest(t)
	w := f.Stream(Stdout)
	w.Write([]byte("abc\n"))
	var out syncBuffer
	res := follow(t, t.Context(), f.Path(), Options{Tail: -1, LimitBytes: 6}, nil, &out)
	w.Write([]byte("defgh\n"))
	// No done, no cancel: the limit alone ends the follow.
	if err := result(t, res); err != nil {
		t.Fatalf("Read = %v", err)
	}
	if got := out.String(); got != "abc\nde" {
		t.Errorf("output = %q", got)
	}
}

func TestNewReader(t *testing.T) {
	r, err := NewReader(t.Context(), "testdata/partial.log", Options{Tail: 2, Timestamps: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	want := "2024-05-01T10:00:04.000000000Z err two\n2024-05-01T10:00:07.000000000Z no newline"
	if string(got) != want {
		t.Errorf("read %q, want %q", got, want)
	}
}

func TestNewReaderCloseStopsFollow(t *testing.T) {
	fastPoll(t)
	f := openTest(t)
	f.Stream(Stdout).Write([]byte("one\n"))
	r, err := NewReader(t.Context(), f.Path(), Options{Tail: -1, Follow: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "one\n" {
		t.Fatalf("ReadString = %q, %v", line, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Read after Close = %v, want io.ErrClosedPipe", err)
	}
}

func TestNewReaderFollowEndsWithEOF(t *testing.T) {
	fastPoll(t)
	f := openTest(t)
	w := f.Stream(Stdout)
	w.Write([]byte("one\n"))
	done := make(chan struct{})
	r, err := NewReader(t.Context(), f.Path(), Options{Tail: -1, Follow: true}, done)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(r) // io.EOF, which ReadAll drops, once done closes
		if err != nil {
			b = append(b, "ERROR: "+err.Error()...)
		}
		got <- string(b)
	}()
	w.Write([]byte("two\n"))
	f.Close()
	close(done)
	select {
	case s := <-got:
		if s != "one\ntwo\n" {
			t.Errorf("read %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader did not end")
	}
}
