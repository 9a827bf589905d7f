package vm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestConsole(t *testing.T) {
	for _, tc := range []struct {
		name, in, out string
		code          int
		reported      bool
	}{
		{"osv crlf", "OSv v0.57.0\r\nhello\r\nprogram /hello returned 0\r\n", "OSv v0.57.0\nhello\nprogram /hello returned 0\n", 0, true},
		{"last code wins", "program /a returned 1\nprogram /b returned 7\n", "program /a returned 1\nprogram /b returned 7\n", 7, true},
		{"no report", "booting\nKernel panic\n", "booting\nKernel panic\n", 0, false},
		{"unterminated last line", "a\r\nb", "a\nb", 0, false},
		{"not at line start", "say program /x returned 3\n", "say program /x returned 3\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole()
			var out bytes.Buffer
			c.pump(strings.NewReader(tc.in), &out)
			if out.String() != tc.out {
				t.Errorf("stdout = %q, want %q", out.String(), tc.out)
			}
			code, ok := c.exitCode()
			if code != tc.code || ok != tc.reported {
				t.Errorf("exitCode = %d, %v; want %d, %v", code, ok, tc.code, tc.reported)
			}
		})
	}
	c := newConsole()
	var in strings.Builder
	for i := range 50 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	c.pump(strings.NewReader(in.String()), nil)
	tail := c.lastLines()
	if len(tail) != consoleTail || tail[0] != "line 30" || tail[consoleTail-1] != "line 49" {
		t.Errorf("tail = %q", tail)
	}
}
