package up

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestIsServeCmdline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmdline string
		want    bool
	}{
		{"serve", "/repo/_output/bin/feather-up\x00--state\x00/repo/_output/up\x00serve\x00", true},
		{"relative", "feather-up\x00serve\x00", true},
		{"up", "/repo/_output/bin/feather-up\x00up\x00", false},
		{"other program", "/usr/bin/sleep\x00serve\x00", false},
		{"no args", "/repo/_output/bin/feather-up\x00", false},
		{"empty (kernel thread)", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isServeCmdline([]byte(tc.cmdline)); got != tc.want {
				t.Errorf("isServeCmdline(%q) = %v, want %v", tc.cmdline, got, tc.want)
			}
		})
	}
}

// TestStatus checks how a pid file is read: none, a live serve, and the
// stale cases — a dead pid, a pid reused by another program, garbage.
func TestStatus(t *testing.T) {
	// A live process that looks like serve: a shell, run through a link
	// named feather-up, with the argument serve.
	fake := filepath.Join(t.TempDir(), programName)
	if err := os.Symlink("/bin/sh", fake); err != nil {
		t.Fatal(err)
	}
	// Each waits reading its stdin, a pipe never written (read is the
	// shell's own: killing the shell leaves no child behind, as a sleep
	// would be, holding what the test's files were — an e2e lock, say).
	start := func(argv ...string) int {
		cmd := exec.Command(argv[0], argv[1:]...)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = in.Close() })
		return cmd.Process.Pid
	}
	serving := start(fake, "-c", "read x; :", serveArg)
	other := start("/bin/sh", "-c", "read x; :", serveArg)
	exited := exec.Command("/bin/sh", "-c", ":")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		pidFile *string // nil: no pid file
		want    status
		wantPid int
	}{
		{"none", nil, statusNone, 0},
		{"serve", ptr(strconv.Itoa(serving) + "\n"), statusRunning, serving},
		{"other program", ptr(strconv.Itoa(other)), statusStale, other},
		{"exited", ptr(strconv.Itoa(exited.Process.Pid)), statusStale, exited.Process.Pid},
		{"garbage", ptr("not a pid\n"), statusStale, 0},
		{"empty", ptr(""), statusStale, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := State{Dir: t.TempDir()}
			if tc.pidFile != nil {
				if err := st.write(pidFile, *tc.pidFile); err != nil {
					t.Fatal(err)
				}
			}
			if got, pid := st.status(); got != tc.want || pid != tc.wantPid {
				t.Errorf("status = %v, pid %d; want %v, pid %d", got, pid, tc.want, tc.wantPid)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestLogTail checks that complete lines are copied once, and a partial
// line only at the end.
func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	tail := &logTail{path: path}
	var out bytes.Buffer
	tail.flush(&out, false) // missing file: nothing
	appendTo := func(s string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	appendTo("one\ntw")
	tail.flush(&out, false)
	if out.String() != "one\n" {
		t.Fatalf("after a line and a half: %q", out.String())
	}
	appendTo("o\nthree")
	tail.flush(&out, false)
	tail.flush(&out, true)
	tail.flush(&out, true)
	if out.String() != "one\ntwo\nthree" {
		t.Fatalf("at the end: %q", out.String())
	}
}
