package pods

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/feather-edge/feather/kubelet/logs"
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

func TestLogTail(t *testing.T) {
	p := &Provider{cfg: Config{LogDir: t.TempDir()}}
	labels := map[string]string{LabelPodNamespace: "ns", LabelPodName: "p", LabelPodUID: "uid1"}
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name, pod.UID = "ns", "p", "uid1"
	path := logs.Path(p.podLogDir(pod), "c", 0)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	record := func(stream, tag, s string) string {
		return "2026-12-03T06:00:00.000000000Z " + stream + " " + tag + " " + s + "\n"
	}
	for _, tc := range []struct {
		name, log, want string
	}{
		{"an unterminated line", record("stdout", "P", "DONE"), "DONE"},
		{"both streams, last 80 lines", func() string {
			var b strings.Builder
			for i := range 100 {
				stream := "stdout"
				if i%2 == 1 {
					stream = "stderr"
				}
				b.WriteString(record(stream, "F", fmt.Sprint(i)))
			}
			return b.String()
		}(), func() string {
			var b strings.Builder
			for i := 20; i < 100; i++ {
				fmt.Fprintf(&b, "%d\n", i)
			}
			return b.String()
		}()},
		{"the last 2048 bytes", record("stdout", "F", strings.Repeat("a", 3000)) + record("stdout", "F", "end"),
			strings.Repeat("a", 2048-5) + "\nend\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.log), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := p.logTail(labels, instance{Name: "c"}); got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
	if got := p.logTail(labels, instance{Name: "none"}); !strings.HasPrefix(got, "Error on reading termination message from logs: ") {
		t.Errorf("a run without a log: %q", got)
	}
}
