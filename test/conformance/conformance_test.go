package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadJUnit checks which specs count: unselected specs (bare "skipped")
// and passed suite nodes are left out; a runtime skip keeps its reason; a
// timed-out spec is a failure; "[It] " is not part of a name; a failure
// without a message attribute takes its text.
func TestReadJUnit(t *testing.T) {
	specs, err := ReadJUnit(filepath.Join("testdata", "junit_01.xml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Spec{
		"[sig-node] Pods should get a host IP [NodeConformance] [Conformance]": {Result: Passed},
		`[sig-node] Probing container should be restarted with a exec "cat /tmp/health" liveness probe [NodeConformance] [Conformance]`: {
			Result: Failed, Message: "timed out | waiting for restart\nsecond line"},
		"[sig-node] Something [LinuxOnly] [Conformance]":                            {Result: Skipped, Message: "Only supported for providers [gce]"},
		"[sig-node] Timed out spec [Conformance]":                                   {Result: Failed, Message: "timedout"},
		"[sig-node] Secrets should be consumable via the environment [Conformance]": {Result: Failed, Message: "expected \"data-1=value-1\" in container output\nmore"},
	}
	if len(specs) != len(want) {
		t.Fatalf("got %d specs, want %d: %+v", len(specs), len(want), specs)
	}
	for _, s := range specs {
		w, ok := want[s.Name]
		if !ok || w.Result != s.Result || w.Message != s.Message {
			t.Errorf("spec %q = %s %q, want %+v (listed: %v)", s.Name, s.Result, s.Message, w, ok)
		}
	}
	if c := Count(specs); c != (Counts{Passed: 1, Failed: 3, Skipped: 1}) {
		t.Errorf("counts = %+v", c)
	}
}

// TestUpdateReadme checks that the table is appended once, then replaced in
// place, leaving the rest of the file alone, and that cells are escaped.
func TestUpdateReadme(t *testing.T) {
	p := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(p, []byte("# kubelet\n\ntext\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	specs := []Spec{{Name: "a | b", Result: Failed, Message: "boom\nmore"}, {Name: "ok", Result: Passed}}
	run := Run{Counts: Count(specs), Duration: 90 * time.Minute, Procs: 4, Version: "v1.37.2"}
	for i := 0; i < 2; i++ {
		if err := UpdateReadme(p, Table(run, specs)); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	s := string(b)
	for _, want := range []string{"# kubelet\n\ntext\n\n## Conformance\n", `| a \| b | failed | not analysed yet: boom |`,
		"1 passed, 1 failed, 0 skipped of 2 selected (50.0% passed)"} {
		if !strings.Contains(s, want) {
			t.Errorf("README lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, tableBegin); n != 1 || strings.Count(s, "## Conformance") != 1 {
		t.Errorf("table written %d times:\n%s", n, s)
	}
	if strings.Contains(s, "| ok |") {
		t.Errorf("a passed spec is in the table:\n%s", s)
	}
}

// TestRepoList checks that the suite's registries all point at the local one.
func TestRepoList(t *testing.T) {
	l := RepoList("127.0.0.1:5000")
	for _, want := range []string{"promoterE2eRegistry: 127.0.0.1:5000/e2e-test-images\n", "gcRegistry: 127.0.0.1:5000\n"} {
		if !strings.Contains(l, want) {
			t.Errorf("repo list lacks %q:\n%s", want, l)
		}
	}
}
