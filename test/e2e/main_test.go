package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/feather-edge/feather/test/leak"
)

// vmProcesses are the programs a VM consists of on the host.
var vmProcesses = []string{"qemu-system-x86_64", "virtiofsd"}

// TestMain runs the suite and then checks that, all tests together, it left
// no qemu, virtiofsd, network link (tap, veth), test network namespace,
// mount, harness directory or file of a kubelet's outside its --root-dir
// (/var/lib/kubelet) behind, whatever was there before it started.
func TestMain(m *testing.M) {
	before, err := snapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: snapshot before the suite:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := before.leaks(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: after the whole suite:", err)
		code = 1
	}
	os.Exit(code)
}

// state is what exists on the host that the suite could leak.
type state struct {
	pids   map[int]bool
	links  map[string]bool
	netns  map[string]bool
	tmp    map[string]bool
	mounts map[string]bool
	files  map[string]bool // under /var/lib/kubelet
}

func snapshot() (*state, error) {
	s := &state{pids: map[int]bool{}, netns: map[string]bool{}, tmp: map[string]bool{}, mounts: map[string]bool{}, files: map[string]bool{}}
	procs, err := leak.Named(vmProcesses...)
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		s.pids[p.Pid] = true
	}
	if s.links, err = leak.Links(); err != nil {
		return nil, err
	}
	ns, _ := filepath.Glob("/var/run/netns/feather-*")
	tmp, _ := filepath.Glob(filepath.Join(os.TempDir(), "feather-*"))
	mounts, err := leak.Mounts(os.TempDir())
	if err != nil {
		return nil, err
	}
	// The upstream kubelet keeps its device manager's socket in
	// /var/lib/kubelet/device-plugins whatever its --root-dir.
	var files []string
	_ = filepath.WalkDir("/var/lib/kubelet", func(path string, _ os.DirEntry, err error) error {
		if err == nil {
			files = append(files, path)
		}
		return nil
	})
	for set, names := range map[*map[string]bool][]string{&s.netns: ns, &s.tmp: tmp, &s.mounts: mounts, &s.files: files} {
		for _, n := range names {
			(*set)[n] = true
		}
	}
	return s, nil
}

// leaks compares the host with s and describes what is new.
func (s *state) leaks() error {
	now, err := snapshot()
	if err != nil {
		return err
	}
	var found []string
	procs, _ := leak.Named(vmProcesses...)
	for _, p := range procs {
		if !s.pids[p.Pid] {
			found = append(found, fmt.Sprintf("process %d: %s", p.Pid, p.Cmdline))
		}
	}
	for _, c := range []struct {
		what       string
		was, isNow map[string]bool
	}{
		{"network link", s.links, now.links},
		{"network namespace", s.netns, now.netns},
		{"directory", s.tmp, now.tmp},
		{"mount", s.mounts, now.mounts},
		{"file", s.files, now.files},
	} {
		for n := range c.isNow {
			if !c.was[n] {
				found = append(found, c.what+" "+n)
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	slices.Sort(found)
	return fmt.Errorf("left behind:\n  %s", strings.Join(found, "\n  "))
}
