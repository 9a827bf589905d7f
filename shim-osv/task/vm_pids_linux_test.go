package task

import (
	"testing"

	"github.com/feather-edge/feather/osv"
)

// TestProcessesMarkStart: QEMU's entry, and only it, says the program has
// started, once it has — what the agent's readiness reads.
func TestProcessesMarkStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pids    []int
		started bool
		want    []string // type URL per entry
	}{
		{name: "booting", pids: []int{10, 11}, started: false, want: []string{"", ""}},
		{name: "started", pids: []int{10, 11, 12}, started: true, want: []string{osv.ProgramStartedTypeURL, "", ""}},
		{name: "no qemu", pids: nil, started: true, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := processes(tc.pids, tc.started)
			if len(ps) != len(tc.want) {
				t.Fatalf("processes(%v, %v): %d entries, want %d", tc.pids, tc.started, len(ps), len(tc.want))
			}
			for i, p := range ps {
				if int(p.Pid) != tc.pids[i] || p.GetInfo().GetTypeUrl() != tc.want[i] {
					t.Errorf("entry %d: pid %d info %q, want pid %d info %q", i, p.Pid, p.GetInfo().GetTypeUrl(), tc.pids[i], tc.want[i])
				}
			}
		})
	}
}
