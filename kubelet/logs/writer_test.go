package logs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var testTime = time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)

// openTest opens a log file in a fresh temp dir with a fixed clock.
func openTest(t *testing.T) *File {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "c", "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.now = func() time.Time { return testTime }
	t.Cleanup(func() { f.Close() })
	return f
}

// records returns the records of the log at path as "stream tag content",
// failing on any line that is not a well-formed record of testTime.
func records(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("log does not end with a newline: %q", data)
	}
	var out []string
	for _, line := range bytes.Split(data[:len(data)-1], []byte{'\n'}) {
		r, err := parseRecord(line)
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		if ts := testTime.Format(time.RFC3339Nano); !bytes.HasPrefix(line, []byte(ts+" ")) {
			t.Fatalf("record %q does not start with %q", line, ts)
		}
		tag := "F"
		if r.partial {
			tag = "P"
		}
		out = append(out, fmt.Sprintf("%s %s %s", r.stream, tag, r.content))
	}
	return out
}

func TestWriterLines(t *testing.T) {
	long := strings.Repeat("x", MaxLine)
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string
	}{
		{"one line", []string{"hello\n"}, []string{"stdout F hello"}},
		{"several lines in one write", []string{"a\nb\nc\n"}, []string{"stdout F a", "stdout F b", "stdout F c"}},
		{"line across writes", []string{"hel", "lo\nwor", "ld\n"}, []string{"stdout F hello", "stdout F world"}},
		{"empty lines", []string{"\n\n"}, []string{"stdout F ", "stdout F "}},
		{"no newline is P on close", []string{"abc"}, []string{"stdout P abc"}},
		{"text after last newline is P on close", []string{"a\nb"}, []string{"stdout F a", "stdout P b"}},
		{"CRLF", []string{"a\r\nb\r\n"}, []string{"stdout F a", "stdout F b"}},
		{"CRLF across writes", []string{"a\r", "\nb\r", "\n"}, []string{"stdout F a", "stdout F b"}},
		{"lone CR kept", []string{"a\rb\n", "\r\r\n"}, []string{"stdout F a\rb", "stdout F \r"}},
		{"CR kept on close", []string{"a\r"}, []string{"stdout P a\r"}},
		{"exactly MaxLine is one F", []string{long + "\n"}, []string{"stdout F " + long}},
		{"MaxLine+1 is P and F", []string{long + "y\n"}, []string{"stdout P " + long, "stdout F y"}},
		{"twice MaxLine is P and F", []string{long + long + "\n"}, []string{"stdout P " + long, "stdout F " + long}},
		{"long line in small writes", chunks(long+long+"tail\n", 1000), []string{"stdout P " + long, "stdout P " + long, "stdout F tail"}},
		{"long line cut before close", []string{long + "rest"}, []string{"stdout P " + long, "stdout P rest"}},
		{"MaxLine then CRLF across writes", []string{long + "\r", "\n"}, []string{"stdout F " + long}},
		{"MaxLine then CR then text", []string{long + "\r", "y\n"}, []string{"stdout P " + long, "stdout F \ry"}},
		{"MaxLine then CR then close", []string{long + "\r"}, []string{"stdout P " + long + "\r"}},
		{"MaxLine then CR then more in one write", []string{long + "\rzz"}, []string{"stdout P " + long, "stdout P \rzz"}},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := openTest(t)
			w := f.Stream(Stdout)
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%d bytes) = %d, %v", len(s), n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got := records(t, f.Path())
			if !slices.Equal(got, tc.want) {
				t.Errorf("records:\n got %q\nwant %q", short(got), short(tc.want))
			}
		})
	}
}

func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// short abbreviates long records for failure messages.
func short(s []string) []string {
	out := make([]string, len(s))
	for i, r := range s {
		if len(r) > 40 {
			r = fmt.Sprintf("%s…(%d bytes)", r[:30], len(r))
		}
		out[i] = r
	}
	return out
}

func TestWriterConcurrentStreams(t *testing.T) {
	f := openTest(t)
	const lines = 300
	line := func(s StreamType, i int) string {
		n := 10 + i*37%100
		if i%50 == 0 {
			n = MaxLine + 100 // cut into P and F
		}
		return fmt.Sprintf("%s %d %s", s, i, strings.Repeat(string(s[3]), n))
	}
	var wg sync.WaitGroup
	for _, s := range []StreamType{Stdout, Stderr} {
		w := f.Stream(s)
		wg.Go(func() {
			defer w.Close()
			for i := range lines {
				// Each line in three writes, so that lines of the two
				// streams are pending at the same time.
				l := line(s, i) + "\n"
				for _, c := range []string{l[:3], l[3:9], l[9:]} {
					if _, err := w.Write([]byte(c)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// Every record is whole, and each stream's lines come in order.
	next := map[StreamType]int{}
	pending := map[StreamType]string{}
	for _, r := range records(t, f.Path()) {
		stream, rest, _ := strings.Cut(r, " ")
		tag, content, _ := strings.Cut(rest, " ")
		s := StreamType(stream)
		pending[s] += content
		if tag == "P" {
			if len(content) != MaxLine {
				t.Fatalf("P record of %d bytes", len(content))
			}
			continue
		}
		if want := line(s, next[s]); pending[s] != want {
			t.Fatalf("%s line %d = %.40q…, want %.40q…", s, next[s], pending[s], want)
		}
		next[s]++
		pending[s] = ""
	}
	for _, s := range []StreamType{Stdout, Stderr} {
		if next[s] != lines {
			t.Errorf("%s: %d lines, want %d", s, next[s], lines)
		}
	}

	// Read joins them back.
	var out bytes.Buffer
	if err := Read(t.Context(), f.Path(), Options{Tail: -1}, nil, &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		got[l] = true
	}
	for _, s := range []StreamType{Stdout, Stderr} {
		for i := range lines {
			if !got[line(s, i)] {
				t.Fatalf("Read lacks %s line %d", s, i)
			}
		}
	}
	if len(got) != 2*lines {
		t.Errorf("Read gave %d lines, want %d", len(got), 2*lines)
	}
}

func TestWriterAppendsAndCreatesDirs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ns_pod_uid", "c", "3.log")
	for _, s := range []string{"first\n", "second\n"} {
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.now = func() time.Time { return testTime }
		if _, err := f.Stream(Stderr).Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := records(t, path), []string{"stderr F first", "stderr F second"}; !slices.Equal(got, want) {
		t.Errorf("records = %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o640 {
		t.Errorf("mode = %v, want 0640", mode)
	}
}

func TestWriterEndsTornRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	torn := "2024-05-01T10:00:00Z stdout F cut sh"
	if err := os.WriteFile(path, []byte(torn), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.now = func() time.Time { return testTime }
	f.Stream(Stdout).Write([]byte("next\n"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, path, Options{Tail: -1}); got != "cut sh\nnext\n" {
		t.Errorf("Read = %q", got)
	}
}

func TestWriterTimestampUTC(t *testing.T) {
	f, err := Open(filepath.Join(t.TempDir(), "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.now = func() time.Time { return testTime.In(time.FixedZone("CEST", 2*3600)) }
	if _, err := f.Stream(Stdout).Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(f.Path())
	if want := "2024-05-01T10:00:00.123456789Z stdout F x\n"; string(data) != want {
		t.Errorf("log = %q, want %q", data, want)
	}
}

func TestWriterClose(t *testing.T) {
	f := openTest(t)
	out, errs := f.Stream(Stdout), f.Stream(Stderr)
	if _, err := out.Write([]byte("out")); err != nil {
		t.Fatal(err)
	}
	if _, err := errs.Write([]byte("err")); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Errorf("second stream Close: %v", err)
	}
	if _, err := out.Write([]byte("more")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	// File.Close flushes the stream left open.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := errs.Write([]byte("more")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after File.Close: %v, want os.ErrClosed", err)
	}
	if err := errs.Close(); err != nil {
		t.Errorf("stream Close after File.Close: %v", err)
	}
	if got, want := records(t, f.Path()), []string{"stdout P out", "stderr P err"}; !slices.Equal(got, want) {
		t.Errorf("records = %q, want %q", got, want)
	}
}

func TestWriterFailedWriteIsReportedByClose(t *testing.T) {
	f := openTest(t)
	w := f.Stream(Stdout)
	f.f.Close() // every write to the file fails from now on
	for range 2 {
		if n, err := w.Write([]byte("dropped\n")); n != 8 || err != nil {
			t.Fatalf("Write = %d, %v; want the output taken and dropped", n, err)
		}
	}
	if err := f.Close(); err == nil || !strings.Contains(err.Error(), "write log") {
		t.Errorf("Close = %v, want the write error", err)
	}
}

func TestWriterUnknownStreamPanics(t *testing.T) {
	f := openTest(t)
	defer func() {
		if recover() == nil {
			t.Error("Stream(\"stdin\") did not panic")
		}
	}()
	f.Stream("stdin")
}

func TestWaitWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	if !WaitWriter(path, 0) {
		t.Error("a missing log has a writer")
	}
	f, err := OpenRotating(path, Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	if WaitWriter(path, 50*time.Millisecond) {
		t.Error("WaitWriter returned true while the writer has the file open")
	}
	done := make(chan bool)
	go func() { done <- WaitWriter(path, 10*time.Second) }()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !<-done {
		t.Error("WaitWriter did not see the writer close the file")
	}
}

func TestWaitWriterAfterRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := OpenRotating(path, Rotation{MaxSize: 100, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	w := f.Stream(Stdout)
	for range 20 {
		if _, err := w.Write([]byte("a line of the log, long enough to rotate\n")); err != nil {
			t.Fatal(err)
		}
	}
	if rs, _ := Rotated(path); len(rs) == 0 {
		t.Fatal("no rotation happened")
	}
	if WaitWriter(path, 50*time.Millisecond) {
		t.Error("WaitWriter returned true while the writer has the file that replaced the rotated one open")
	}
	w.Close()
	f.Close()
	if !WaitWriter(path, time.Second) {
		t.Error("WaitWriter did not see the writer close the file")
	}
}
