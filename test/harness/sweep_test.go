package harness

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSweepTasks lays out what a killed containerd's shims leave — a task
// bundle in the tree; outside it, shim sockets, runc state, nested cgroups —
// and checks that sweepTasks removes exactly that task's and reports it.
func TestSweepTasks(t *testing.T) {
	dir, run, cgroups := t.TempDir(), t.TempDir(), t.TempDir()
	address := filepath.Join(dir, "containerd", "containerd.sock")
	socket := func(p string) string {
		return filepath.Join(run, "s", fmt.Sprintf("%x", sha256.Sum256([]byte(p))))
	}
	mine := []string{
		socket(address + "/ns1/task-a"),
		socket(address + "/ns1/task-a/debug"),
		filepath.Join(run, "runc", "ns1", "task-a", "state.json"),
		filepath.Join(cgroups, "memory", "ns1", "task-a", "child", "x"),
		filepath.Join(cgroups, "pids", "ns1", "task-a", "x"),
		filepath.Join(cgroups, "ns1", "task-a", "x"),
	}
	others := []string{
		socket("/elsewhere/containerd.sock/ns1/task-b"),
		filepath.Join(run, "runc", "ns1", "task-b", "state.json"),
		filepath.Join(cgroups, "memory", "ns1", "task-b", "x"),
	}
	for _, p := range append(append([]string{filepath.Join(dir, "containerd", "state",
		"io.containerd.runtime.v2.task", "ns1", "task-a", "config.json")}, mine...), others...) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// cgroupfs files vanish with their directory; plain files would keep
	// rmdir from working, so remove them as the kernel would.
	for _, p := range mine[3:] {
		os.Remove(p)
	}

	err := sweepTasks(dir, run, cgroups)
	if err == nil || !strings.Contains(err.Error(), "leaked task ns1/task-a") {
		t.Errorf("sweepTasks = %v, want it to report task ns1/task-a", err)
	}
	for _, p := range mine {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there", p)
		}
	}
	for _, p := range []string{filepath.Join(run, "runc", "ns1", "task-a"), filepath.Join(cgroups, "memory", "ns1", "task-a"), filepath.Join(cgroups, "ns1", "task-a")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there", p)
		}
	}
	for _, p := range others {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("another task's %s was removed: %v", p, err)
		}
	}
	if err := sweepTasks(t.TempDir(), run, cgroups); err != nil {
		t.Errorf("sweepTasks of a tree without tasks = %v", err)
	}
}
