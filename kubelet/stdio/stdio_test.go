package stdio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"

	"github.com/feather-edge/feather/kubelet/logs"
)

// The test binary is the helper when run with Mode first.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Mode {
		os.Exit(Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"plain", Options{Dir: "/run/x", Log: "/var/log/pods/a/c/0.log"}},
		{"rotated tty once", Options{Dir: "/run/y", Log: "/l/0.log", Rotation: logs.Rotation{MaxSize: 1 << 20, MaxFiles: 3}, TTY: true, StdinOnce: true, OpenTimeout: time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseArgs(tc.o.Args())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.o) {
				t.Errorf("ParseArgs(Args()) = %+v, want %+v", got, tc.o)
			}
		})
	}
	for _, args := range [][]string{{"dir"}, {"cri-log", "/l"}, {"dir", "/d"}, {"dir", "/d", "cri-log", "/l", "tty", "maybe"}} {
		if _, err := ParseArgs(args); err == nil {
			t.Errorf("ParseArgs(%q) succeeded", args)
		}
	}
}

func TestPathsFor(t *testing.T) {
	a, b := PathsFor("/run/feather/stdio", "12345678-c-0"), PathsFor("/run/feather/stdio", "12345678-c-1")
	if a.Dir == b.Dir || filepath.Dir(a.Dir) != "/run/feather/stdio" || filepath.Dir(a.Socket) != a.Dir {
		t.Errorf("PathsFor = %+v and %+v", a, b)
	}
	long := PathsFor("/run/feather/stdio", strings.Repeat("x", 76))
	if len(long.Socket) > 60 {
		t.Errorf("socket path %q is long", long.Socket)
	}
}

// shim opens the fifos as containerd's runc shim does for a task.
type shim struct {
	stdout, stderr io.WriteCloser
	stdin          io.ReadCloser
}

func openShim(t *testing.T, ps Paths, tty bool) *shim {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s shim
	var err error
	if s.stdout, err = fifo.OpenFifo(ctx, ps.Stdout, syscall.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	}
	if !tty {
		if s.stderr, err = fifo.OpenFifo(ctx, ps.Stderr, syscall.O_WRONLY, 0); err != nil {
			t.Fatal(err)
		}
	}
	if s.stdin, err = fifo.OpenFifo(context.Background(), ps.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
		t.Fatal(err)
	}
	return &s
}

func (s *shim) exit() {
	s.stdout.Close()
	if s.stderr != nil {
		s.stderr.Close()
	}
	s.stdin.Close()
}

func startHelper(t *testing.T, o Options) (*Helper, Paths) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ps := PathsFor(root, "pod-c-0")
	o.Dir = ps.Dir
	o.Log = filepath.Join(root, "log", "0.log")
	h, err := Start(context.Background(), bin, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h, ps
}

// waitGone waits for the helper to remove its directory.
func waitGone(t *testing.T, dir string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper directory %s still there", dir)
		}
		time.Sleep(10 * time.Millisecond) // polls the helper's exit
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	var b strings.Builder
	if err := logs.Read(context.Background(), path, logs.Options{Tail: -1}, nil, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestHelper(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tty, once bool
		// afterEOF is what the container reads once the first session's
		// input ended: io.EOF (stdin closed), the terminal's ^D, or
		// nothing yet (stdin stays open).
		afterEOF string
	}{
		{name: "stdin", afterEOF: "open"},
		{name: "stdinOnce", once: true, afterEOF: "EOF"},
		{name: "tty stdinOnce", tty: true, once: true, afterEOF: "\x04"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ps := startHelper(t, Options{TTY: tc.tty, StdinOnce: tc.once})
			if h.Paths() != ps {
				t.Errorf("helper paths %+v, want %+v", h.Paths(), ps)
			}
			s := openShim(t, ps, tc.tty)
			in := bufio.NewReader(s.stdin)

			c, err := Dial(context.Background(), ps, true)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			line, err := in.ReadString('\n')
			if err != nil || line != "hello\n" {
				t.Fatalf("container read %q, %v", line, err)
			}
			_ = c.CloseWrite()
			got := make(chan string, 1)
			go func() {
				b := make([]byte, 1)
				n, err := in.Read(b)
				if err != nil {
					got <- "EOF"
					return
				}
				got <- string(b[:n])
			}()
			select {
			case g := <-got:
				if g != tc.afterEOF {
					t.Errorf("after the session's EOF the container read %q, want %q", g, tc.afterEOF)
				}
			case <-time.After(500 * time.Millisecond): // proves nothing arrives: the only timed wait
				if tc.afterEOF != "open" {
					t.Errorf("after the session's EOF the container read nothing, want %q", tc.afterEOF)
				}
			}
			c.Close()

			// A session without input, and a second one with input,
			// which a stdinOnce container does not get.
			watch, err := Dial(context.Background(), ps, false)
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close()
			second, err := Dial(context.Background(), ps, true)
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			if _, err := second.Write([]byte("again\n")); err != nil {
				t.Fatal(err)
			}
			if !tc.once {
				// The reader above is still waiting, for the first byte.
				first := <-got
				line, err := in.ReadString('\n')
				if err != nil || first+line != "again\n" {
					t.Fatalf("container read %q, %v from a second session", first+line, err)
				}
			}

			if _, err := s.stdout.Write([]byte("out line\n")); err != nil {
				t.Fatal(err)
			}
			if s.stderr != nil {
				if _, err := s.stderr.Write([]byte("err line\n")); err != nil {
					t.Fatal(err)
				}
			}
			s.exit()
			// The sessions end once the log is complete.
			for _, c := range []io.Reader{watch, second} {
				// EOF, or a reset if the helper had input unread.
				if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
					t.Errorf("session read %d, %v, want its end", n, err)
				}
			}
			waitGone(t, ps.Dir)
			want := "out line\n"
			if !tc.tty {
				want += "err line\n"
			}
			if got := readLog(t, filepath.Join(filepath.Dir(ps.Dir), "log", "0.log")); !sameLines(got, want) {
				t.Errorf("log = %q, want %q", got, want)
			}
			if _, err := Dial(context.Background(), ps, false); !errors.Is(err, ErrNoHelper) {
				t.Errorf("Dial after the helper ended: %v, want ErrNoHelper", err)
			}
		})
	}
}

// sameLines compares the lines of a and b in any order (stdout and stderr
// are copied apart).
func sameLines(a, b string) bool {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(la) != len(lb) {
		return false
	}
	seen := map[string]int{}
	for _, l := range la {
		seen[l]++
	}
	for _, l := range lb {
		seen[l]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// A helper whose task is never created ends by itself.
func TestHelperNoTask(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ps := PathsFor(root, "x")
	if _, err := Start(context.Background(), bin, Options{Dir: ps.Dir, Log: filepath.Join(root, "0.log"), OpenTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ps.Dir)
}
