package osv

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    Line
		invalid bool
	}{
		{"stored by OSv's build", "--rootfs=rofs /minimal",
			Line{Options: []string{"--rootfs=rofs"}, Commands: []Command{{Words: []string{"/minimal"}}}}, false},
		{"escaped option", `--env=A=x\ y --env=B=a\\b\"c  /args`,
			Line{Options: []string{"--env=A=x y", `--env=B=a\b"c`}, Commands: []Command{{Words: []string{"/args"}}}}, false},
		{"quoted option is the command", `"--env=A=x y" /args`,
			Line{Commands: []Command{{Words: []string{"--env=A=x y", "/args"}}}}, false},
		{"quotes and escapes", `/args "a b" c\"d "e\\f" "g\qh" x\ty 'sq' ""`,
			Line{Commands: []Command{{Words: []string{"/args", "a b", `c"d`, `e\f`, `g\qh`, "x\ty", "'sq'", ""}}}}, false},
		{"separators", `/a x; /b & /c &! /d ! /e`,
			Line{Commands: []Command{{Words: []string{"/a", "x"}, Sep: ";"}, {Words: []string{"/b"}, Sep: "&"},
				{Words: []string{"/c"}, Sep: "&!"}, {Words: []string{"/d"}, Sep: "!"}, {Words: []string{"/e"}}}}, false},
		{"quoted separators", `/a "x;y&z!"`, Line{Commands: []Command{{Words: []string{"/a", "x;y&z!"}}}}, false},
		{"unterminated quote is a bare word", `/a "x`, Line{Commands: []Command{{Words: []string{"/a", `"x`}}}}, false},
		{"blank", " ; ", Line{}, false},
		{"non-ASCII", "/args ü", Line{}, true},
		{"separator first", "; ; & /a", Line{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("Parse(%q) = %+v, %v; want ErrInvalidArgument", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) =\n%+v\nwant\n%+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	got := Expand([]string{"$A", "x$A", "$NONE", "a$A$B", "plain"}, EnvLookup([]string{"A=1", "A=2", "A$B=3"}))
	want := []string{"2", "x2", "", "a3", "plain"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Expand = %q, want %q", got, want)
	}
}

func TestAppPart(t *testing.T) {
	for in, want := range map[string]string{
		"--verbose --env=A=a\\ b /args x": "/args x",
		"/minimal":                        "/minimal",
		`--rootfs=rofs "/args" y`:         `"/args" y`,
	} {
		if got := AppPart(in); got != want {
			t.Errorf("AppPart(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSingle(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Cmdline
		err      string
	}{
		{"one word", "/hello", Cmdline{Args: []string{"/hello"}}, ""},
		{"arguments", `/args a "b c"  d`, Cmdline{Args: []string{"/args", "a", "b c", "d"}}, ""},
		{"env and cwd lifted", `--env=A=1 --cwd=/tmp --env=B=x\ y /app.so -v`,
			Cmdline{Args: []string{"/app.so", "-v"}, Env: []string{"A=1", "B=x y"}, Cwd: "/tmp"}, ""},
		{"other options kept", `--rootfs=rofs --verbose /app.so`, Cmdline{Args: []string{"--rootfs=rofs", "--verbose", "/app.so"}}, ""},
		{"options after the program are arguments", `/app.so --env=X=1`, Cmdline{Args: []string{"/app.so", "--env=X=1"}}, ""},
		{"own variables expanded", `--env=PORT=8000 /httpd $PORT $HOME`, Cmdline{Args: []string{"/httpd", "8000", "$HOME"}, Env: []string{"PORT=8000"}}, ""},
		{"quoted separator", `/sh "a;b" "c & d"`, Cmdline{Args: []string{"/sh", "a;b", "c & d"}}, ""},
		{"trailing semicolon", `runscript /run/default;`, Cmdline{Args: []string{"runscript", "/run/default"}}, ""},
		{"empty quoted word", `/args ""`, Cmdline{Args: []string{"/args", ""}}, ""},
		{"empty", "  ", Cmdline{}, "no command"},
		{"two commands", "/a.so; /b.so", Cmdline{}, "several commands"},
		{"background", "/a.so & /b.so", Cmdline{}, "several commands"},
		{"options only", "--verbose", Cmdline{}, "no command"},
		{"bad env", "--env=NOEQUALS /a", Cmdline{}, "KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Parse(tc.in)
			var got Cmdline
			if err == nil {
				got, err = l.Single()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("%q: error = %v, want one with %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%q = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}
