package leak

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestMountsUnder(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := mountsUnder(f, "/tmp/feather-abc")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/tmp/feather-abc/containerd/state/io.containerd.runtime.v2.task/ns/c1/rootfs",
		"/tmp/feather-abc/containerd/state/io.containerd.runtime.v2.task/ns/c1/rootfs/proc",
		"/tmp/feather-abc/with space",
		"/tmp/feather-abc",
	}
	if !slices.Equal(got, want) {
		t.Errorf("mountsUnder = %q, want %q", got, want)
	}
}

func TestMentions(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want bool
	}{
		{"/tmp/d", true},
		{"/tmp/d/containerd.sock", true},
		{"--config=/tmp/d/config.toml", true},
		{"unix:///tmp/d/sock", true},
		{"/tmp/dd/sock", false},
		{"/tmp/dd/x,/tmp/d/y", true},
		{"--data-dir=/var/lib/etcd", false},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			if got := mentions(tc.arg, "/tmp/d"); got != tc.want {
				t.Errorf("mentions(%q) = %v, want %v", tc.arg, got, tc.want)
			}
		})
	}
}

// TestProcesses starts a process from a temporary directory and finds it
// there, by working directory and by command line; once it ended, it is gone.
func TestProcesses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, why string
		cmd       func() *exec.Cmd
	}{
		{"cwd", "cwd", func() *exec.Cmd {
			c := exec.Command("sleep", "60")
			c.Dir = dir
			return c
		}},
		{"cmdline", "cmdline", func() *exec.Cmd { return exec.Command("sh", "-c", "sleep 60; true", "sh", "--path="+dir+"/x") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := tc.cmd()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			procs, err := Processes(dir)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(procs, func(p Proc) bool { return p.Pid == cmd.Process.Pid })
			if i < 0 {
				t.Fatalf("process %d not found under %s: %+v", cmd.Process.Pid, dir, procs)
			}
			if procs[i].Why != tc.why {
				t.Errorf("found by %q, want %q", procs[i].Why, tc.why)
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			if err := WaitGone(procs[i : i+1]); err != nil {
				t.Fatal(err)
			}
			procs, err = Processes(dir)
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(procs, func(p Proc) bool { return p.Pid == cmd.Process.Pid }) {
				t.Errorf("process %d still reported after it ended", cmd.Process.Pid)
			}
		})
	}
}

func TestNamed(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	procs, err := Named("sleep")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(procs, func(p Proc) bool { return p.Pid == cmd.Process.Pid && p.Cmdline == "sleep 60" }) {
		t.Errorf("Named(sleep) = %+v, lacks pid %d", procs, cmd.Process.Pid)
	}
	if procs, _ := Named("no-such-program"); len(procs) != 0 {
		t.Errorf("Named(no-such-program) = %+v", procs)
	}
}
