package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestPlainLines(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, false, "pushed")
	b.Start("a", "layer aaaa", 2048)
	b.Start("b", "config bbbb", 10)
	b.Set("a", 1024)
	if buf.Len() != 0 {
		t.Errorf("plain mode printed before a blob was done: %q", buf.String())
	}
	b.Done("a", "done")
	b.Done("a", "failed") // a second Done is ignored
	b.Done("b", "exists")
	b.Stop()
	want := "pushed   layer aaaa (2.0 KiB)\nexists   config bbbb (10 B)\n"
	if buf.String() != want {
		t.Errorf("output = %q, want %q", buf.String(), want)
	}
	var nilBars *Bars
	nilBars.Start("x", "x", 1) // a nil *Bars shows nothing, and does not panic
	nilBars.Stop()
}

func TestTerminalBars(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, true, "pulled")
	b.Start("a", "layer aaaa", 100)
	b.Set("a", 50)
	b.Stop()
	out := buf.String()
	if !strings.Contains(out, "layer aaaa") || !strings.Contains(out, " 50%") || !strings.Contains(out, "\x1b[2K") {
		t.Errorf("terminal output = %q", out)
	}
}
