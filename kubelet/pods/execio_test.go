package pods

import (
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestMergedIO plays the shim's side of an exec's one fifo: two writers
// (stdout and stderr), or none before a cancel.
func TestMergedIO(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string // one writer each, as the shim opens stdout and stderr
		cancel bool     // cancelled before any writer opened
		want   string   // what the writer got, its lines sorted
	}{
		{"stdout and stderr", []string{"out\n", "err\n"}, false, "err\nout\n"},
		{"no output", []string{"", ""}, false, ""},
		{"cancelled before the shim opened it", nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &limitedBuffer{n: maxProbeOutput}
			pio, err := mergedIOCreator(t.TempDir(), out)("exec-1")
			if err != nil {
				t.Fatal(err)
			}
			cfg := pio.Config()
			if cfg.Stdout == "" || cfg.Stdout != cfg.Stderr || cfg.Stdin != "" || cfg.Terminal {
				t.Fatalf("config %+v: want one fifo for stdout and stderr", cfg)
			}
			var ws []*os.File
			for _, w := range tc.writes {
				f, err := os.OpenFile(cfg.Stdout, os.O_WRONLY, 0) // blocks until the read side is open, as the shim's
				if err != nil {
					t.Fatalf("open the fifo's write side: %v", err)
				}
				if _, err := f.WriteString(w); err != nil {
					t.Fatal(err)
				}
				ws = append(ws, f)
			}
			if tc.cancel {
				pio.Cancel()
			}
			for _, f := range ws {
				_ = f.Close()
			}
			waited := make(chan struct{})
			go func() { pio.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(10 * time.Second):
				t.Fatal("Wait did not return once the writers closed")
			}
			if got := sortedLines(out.String()); got != tc.want {
				t.Errorf("output %q, want %q", got, tc.want)
			}
			if err := pio.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(cfg.Stdout); !os.IsNotExist(err) {
				t.Errorf("the fifo is left after Close: %v", err)
			}
		})
	}
}

func sortedLines(s string) string {
	l := strings.SplitAfter(s, "\n")
	sort.Strings(l)
	return strings.Join(l, "")
}
