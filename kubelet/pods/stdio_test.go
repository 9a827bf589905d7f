package pods

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestTaskIO: which containers get a stdio helper (stdin under runc) and
// which the binary:// logger, with a terminal for tty under runc only.
func TestTaskIO(t *testing.T) {
	p := &Provider{cfg: Config{Logger: "/usr/bin/feather-cri-log", RunDir: t.TempDir()}}
	for _, tc := range []struct {
		name     string
		c        corev1.Container
		runc     bool
		terminal bool
	}{
		{"plain", corev1.Container{Name: "c"}, true, false},
		{"tty without stdin", corev1.Container{Name: "c", TTY: true}, true, true},
		{"unikernel with stdin and tty", corev1.Container{Name: "c", Stdin: true, TTY: true}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creator, helper, err := p.taskIO(context.Background(), &tc.c, "u-c-0", "/var/log/pods/x/c/0.log", tc.runc)
			if err != nil || helper != nil {
				t.Fatalf("taskIO: helper %v, %v; want the logger", helper, err)
			}
			io, err := creator("u-c-0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := io.Config()
			if !strings.HasPrefix(cfg.Stdout, "binary:///usr/bin/feather-cri-log?") || cfg.Stderr != cfg.Stdout || cfg.Stdin != "" || cfg.Terminal != tc.terminal {
				t.Errorf("task IO %+v, want the logger, terminal %v", cfg, tc.terminal)
			}
		})
	}
	// A container with stdin under runc gets a helper: here its binary
	// does not exist, and the error says so.
	if _, _, err := p.taskIO(context.Background(), &corev1.Container{Name: "c", Stdin: true}, "u-c-0", "/nonexistent/0.log", true); err == nil || !strings.Contains(err.Error(), "stdio helper") {
		t.Errorf("taskIO with stdin and no helper binary: %v", err)
	}
}
