package vm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/feather-edge/feather/osv"
)

func TestConsole(t *testing.T) {
	boot := "OSv v0.57.0\r\nSetting in environment: SECRET=s3cr3t\r\nCmdline: /args x\r\n"
	for _, tc := range []struct {
		name, in, out string
		end           *osv.Ending
	}{
		{"osv crlf, boot and shutdown hidden", boot + "hello\r\nprogram /args returned 3\r\nVFS: unmounting /dev\r\nPowering off.\r\n", "hello\n",
			&osv.Ending{Code: 3, Line: "program /args returned 3"}},
		{"no report", boot + "booting\n", "booting\n", nil},
		{"unterminated last line", boot + "a\r\nb", "a\nb", nil},
		{"not at line start", boot + "say program /x returned 3\n", "say program /x returned 3\n", nil},
		{"never started", "OSv v0.57.0\r\nSetting in environment: SECRET=s3cr3t\r\n", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole(nil)
			var out bytes.Buffer
			c.pump(strings.NewReader(tc.in), &out)
			if out.String() != tc.out {
				t.Errorf("stdout = %q, want %q", out.String(), tc.out)
			}
			if got := c.end(); fmt.Sprint(got) != fmt.Sprint(tc.end) {
				t.Errorf("end = %+v, want %+v", got, tc.end)
			}
			if tail := strings.Join(c.lastLines(), "\n"); strings.Contains(tail, "s3cr3t") || strings.Contains(tail, "/args x") {
				t.Errorf("the remembered lines keep a value: %q", tail)
			}
		})
	}
	c := newConsole(nil)
	var in strings.Builder
	in.WriteString("Cmdline: /x\n")
	for i := range 50 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	c.pump(strings.NewReader(in.String()), nil)
	tail := c.lastLines()
	if len(tail) != consoleTail || tail[0] != "line 30" || tail[consoleTail-1] != "line 49" {
		t.Errorf("tail = %q", tail)
	}
	select {
	case <-c.start:
	default:
		t.Error("start not signalled")
	}
}
