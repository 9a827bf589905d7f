package pods

import (
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestTerminationLog(t *testing.T) {
	p := &Provider{cfg: Config{StateDir: t.TempDir()}}
	for _, tc := range []struct {
		name string
		c    corev1.Container
		vm   bool
		dest string
	}{
		{"default path", corev1.Container{Name: "a"}, false, "/dev/termination-log"},
		{"own path", corev1.Container{Name: "b", TerminationMessagePath: "/tmp/why"}, false, "/tmp/why"},
		{"a VM's is where the shim looks", corev1.Container{Name: "c", TerminationMessagePath: "/tmp/why"}, true, "/dev/termination-log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := p.terminationMount("uid1", tc.c.Name+"-0", &tc.c, tc.vm)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(m.Source)
			if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o666 || m.Destination != tc.dest {
				t.Fatalf("mount %+v, file %v %v", m, fi, err)
			}
			if got := p.terminationMessage("uid1", tc.c.Name+"-0"); got != "" {
				t.Errorf("message of a fresh log = %q", got)
			}
			if err := os.WriteFile(m.Source, []byte(strings.Repeat("x", 5000)), 0o666); err != nil {
				t.Fatal(err)
			}
			if got := p.terminationMessage("uid1", tc.c.Name+"-0"); len(got) != maxTerminationMessage {
				t.Errorf("a 5000-byte message is read as %d bytes, want kubelet's %d", len(got), maxTerminationMessage)
			}
		})
	}
	if got := p.terminationMessage("uid1", "none"); got != "" {
		t.Errorf("message of a run without a log = %q", got)
	}
}
