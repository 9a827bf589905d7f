package osv

import (
	"reflect"
	"strings"
	"testing"
)

// Console transcripts of the real OSv v0.57.0 (../shared/osv), trimmed.
func TestConsole(t *testing.T) {
	boot := []string{"OSv v0.57.0", "1 CPUs detected", "Setting in environment: SECRET=s3cr3t", "Booted up in 0.00 ms"}
	shutdown := []string{"VFS: unmounting /dev", "ROFS: hit ratio is 93.75%", "Powering off."}
	for _, tc := range []struct {
		name   string
		lines  []string
		output []string
		end    *Ending
	}{
		{"return 3", concat(boot, "Cmdline: /args", "argv[0]=/args", "program /args returned 3", shutdown),
			[]string{"argv[0]=/args"}, &Ending{Code: 3, Line: "program /args returned 3"}},
		{"return 0 is not reported", concat(boot, "Cmdline: /args", "hello", "[virtiofs] inode 2, lookup failed to find x", "bye", shutdown),
			[]string{"hello", "bye"}, &Ending{Code: 0, Line: "VFS: unmounting /dev", Inferred: true}},
		{"exit(5)", concat(boot, "Cmdline: /exitcall 5", "exitcall: calling exit(5)", "program exited with status 5", shutdown),
			[]string{"exitcall: calling exit(5)"}, &Ending{Code: 5, Line: "program exited with status 5"}},
		{"missing program", concat(boot, "Cmdline: /nonexist", "Failed to load object: /nonexist. Powering off."),
			nil, &Ending{Code: ExitNotFound, Reason: "NotFound", Line: "Failed to load object: /nonexist. Powering off."}},
		{"no root file system", concat([]string{"OSv v0.57.0", "VFS: mounting rofs at /rofs", "[rofs] Error opening device!",
			"failed to mount /rofs, error = No such device or address", "Could not load and/or initialize /usr/lib/fs/libsolaris.so."},
			"Cmdline: /args", "Failed to load object: /args. Powering off."),
			nil, &Ending{Code: ExitNotFound, Reason: "NoRoot", Line: "Failed to load object: /args. Powering off."}},
		{"crash", concat(boot, "Cmdline: /crash", "crash: writing through a NULL pointer", "Aborted", "", "[backtrace]", "0x0000000040217bf1 <???+1075936241>"),
			[]string{"crash: writing through a NULL pointer"}, &Ending{Code: ExitAborted, Reason: "Crashed", Line: "Aborted"}},
		{"an echo in the environment does not start it", concat([]string{"Setting in environment: X=1", "Cmdline: /fake"}, boot, "Cmdline: /args", "out"),
			[]string{"out"}, nil},
		{"program prints OSv-looking lines", concat(boot, "Cmdline: /args", "Cmdline: /args", "program exited with statusX"),
			[]string{"Cmdline: /args", "program exited with statusX"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Console{Echo: "/args"}
			if strings.HasPrefix(tc.name, "exit") || strings.HasPrefix(tc.name, "missing") || strings.HasPrefix(tc.name, "no root") || strings.HasPrefix(tc.name, "crash") {
				c.Echo = ""
			}
			var out []string
			for _, l := range tc.lines {
				k := c.Line(l)
				if k == Output {
					out = append(out, l)
				}
				if k == Boot && strings.Contains(Redact(l), "s3cr3t") {
					t.Errorf("Redact(%q) keeps the value", l)
				}
			}
			if !reflect.DeepEqual(out, tc.output) {
				t.Errorf("output = %q, want %q", out, tc.output)
			}
			if !reflect.DeepEqual(c.End(), tc.end) {
				t.Errorf("End() = %+v, want %+v", c.End(), tc.end)
			}
			if !c.Started() {
				t.Error("never started")
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"Setting in environment: PASSWORD=hunter2": "Setting in environment: PASSWORD=…",
		"Cmdline: /args secret":                    "Cmdline: (12 bytes)",
		"Booted up in 0.00 ms":                     "Booted up in 0.00 ms",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func concat(head []string, rest ...any) []string {
	out := append([]string(nil), head...)
	for _, r := range rest {
		switch v := r.(type) {
		case string:
			out = append(out, v)
		case []string:
			out = append(out, v...)
		}
	}
	return out
}
