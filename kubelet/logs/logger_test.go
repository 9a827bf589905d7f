package logs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestMain makes the test binary a binary:// logger when the test below
// runs it with FEATHER_TEST_LOGGER=PATH.
func TestMain(m *testing.M) {
	if path := os.Getenv("FEATHER_TEST_LOGGER"); path != "" {
		if err := BinaryLogger(path, Rotation{}); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBinaryLogger runs the logger as containerd's shim does: stdout on fd 3,
// stderr on fd 4, fd 5 closed once ready; both streams land in the file, and
// it exits once both end.
func TestBinaryLogger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c", "0.log")
	cmd, stdout, stderr := startLogger(t, path)
	stdout.WriteString("hello\npartial")
	stderr.WriteString("oops\n")
	stdout.Close()
	stderr.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	want := []string{"stderr F oops", "stdout F hello", "stdout P partial"}
	if got := loggedRecords(t, path); !slices.Equal(got, want) {
		t.Errorf("records = %q, want %q", got, want)
	}
}

// TestBinaryLoggerSIGTERM: the runc shim sends SIGTERM as it deletes the
// task, when the container's last output may still be in the pipes; the
// logger goes on until the streams end and loses nothing, an unterminated
// last line included. Here the signal comes before the output, so a logger
// that obeyed it would lose every line.
func TestBinaryLoggerSIGTERM(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c", "0.log")
	cmd, stdout, stderr := startLogger(t, path)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 200 {
		fmt.Fprintf(stdout, "line %03d\n", i)
		want = append(want, fmt.Sprintf("stdout F line %03d", i))
	}
	stdout.WriteString("last")
	stderr.WriteString("bye\n")
	want = append(want, "stdout P last", "stderr F bye")
	stdout.Close()
	stderr.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logger after SIGTERM: %v", err)
	}
	slices.Sort(want)
	if got := loggedRecords(t, path); !slices.Equal(got, want) {
		t.Errorf("records = %q, want %q", got, want)
	}
}

// startLogger runs the test binary as a binary:// logger writing path, as
// containerd's shim does: stdout on fd 3, stderr on fd 4, fd 5 closed once
// ready. It returns once the logger is ready, with the write ends of its
// stdout and stderr.
func startLogger(t *testing.T, path string) (cmd *exec.Cmd, stdout, stderr *os.File) {
	t.Helper()
	var ends [3][2]*os.File // read, write ends of stdout, stderr, ready
	for i := range ends {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = [2]*os.File{r, w}
		t.Cleanup(func() { r.Close(); w.Close() })
	}
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FEATHER_TEST_LOGGER="+path)
	cmd.ExtraFiles = []*os.File{ends[0][0], ends[1][0], ends[2][1]}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{ends[0][0], ends[1][0], ends[2][1]} {
		f.Close() // the logger's ends
	}
	ready := make(chan error, 1)
	go func() { _, err := io.ReadAll(ends[2][0]); ready <- err }()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the logger did not close fd 5")
	}
	return cmd, ends[0][1], ends[1][1]
}

// loggedRecords returns the records of the log at path as "STREAM TAG
// CONTENT", sorted (two streams interleave in any order).
func loggedRecords(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
		r, err := parseRecord(line)
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		tag := "F"
		if r.partial {
			tag = "P"
		}
		got = append(got, fmt.Sprintf("%s %s %s", r.stream, tag, r.content))
	}
	slices.Sort(got)
	return got
}

func TestLoggerArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		path string
		rot  Rotation
		err  bool
	}{
		{"path only", []string{"cri-log", "/l/0.log"}, "/l/0.log", Rotation{}, false},
		{"rotation", []string{"cri-log", "/l/0.log", "max-size", "1024", "max-files", "3"}, "/l/0.log", Rotation{1024, 3}, false},
		{"any order", []string{"max-files", "3", "cri-log", "/l/0.log", "max-size", "1024"}, "/l/0.log", Rotation{1024, 3}, false},
		{"no path", []string{"max-size", "1024", "max-files", "3"}, "", Rotation{}, true},
		{"odd", []string{"cri-log"}, "", Rotation{}, true},
		{"unknown", []string{"cri-log", "/l/0.log", "colour", "red"}, "", Rotation{}, true},
		{"bad size", []string{"cri-log", "/l/0.log", "max-size", "10Mi", "max-files", "3"}, "", Rotation{}, true},
		{"one file", []string{"cri-log", "/l/0.log", "max-size", "10", "max-files", "1"}, "", Rotation{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, rot, err := ParseLoggerArgs(tc.args)
			if (err != nil) != tc.err || path != tc.path || (err == nil && rot != tc.rot) {
				t.Errorf("ParseLoggerArgs(%q) = %q, %+v, %v", tc.args, path, rot, err)
			}
		})
	}
	// What LoggerQuery writes parses back, whatever the order of the pairs.
	for _, rot := range []Rotation{{}, DefaultRotation} {
		var args []string
		for k, vs := range LoggerQuery("/l/0.log", rot) {
			args = append(args, k, vs[0])
		}
		if path, got, err := ParseLoggerArgs(args); err != nil || path != "/l/0.log" || got != rot {
			t.Errorf("round trip of %+v = %q, %+v, %v", rot, path, got, err)
		}
	}
}
