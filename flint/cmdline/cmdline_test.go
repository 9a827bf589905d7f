package cmdline

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Command
		err      string
	}{
		{"one word", "/hello", Command{Args: []string{"/hello"}}, ""},
		{"arguments", `/args a "b c"  d`, Command{Args: []string{"/args", "a", "b c", "d"}}, ""},
		{"env and cwd lifted", `--env=A=1 --cwd=/tmp --env="B=x y" /app.so -v`,
			Command{Args: []string{"/app.so", "-v"}, Env: []string{"A=1", "B=x y"}, Cwd: "/tmp"}, ""},
		{"other options kept", `--rootfs=rofs --verbose /app.so`, Command{Args: []string{"--rootfs=rofs", "--verbose", "/app.so"}}, ""},
		{"options after the program are arguments", `/app.so --env=X=1`, Command{Args: []string{"/app.so", "--env=X=1"}}, ""},
		{"quoted separator", `/sh "a;b" "c & d"`, Command{Args: []string{"/sh", "a;b", "c & d"}}, ""},
		{"trailing semicolon", `runscript /run/default;`, Command{Args: []string{"runscript", "/run/default"}}, ""},
		{"empty quoted word", `/args ""`, Command{Args: []string{"/args", ""}}, ""},
		{"empty", "  ", Command{}, "empty"},
		{"two commands", "/a.so; /b.so", Command{}, "several commands"},
		{"background", "/a.so & /b.so", Command{}, "several commands"},
		{"unterminated", `/a "b`, Command{}, "unterminated"},
		{"options only", "--verbose", Command{}, "no command"},
		{"bad env", "--env=NOEQUALS /a", Command{}, "KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("Parse(%q) error = %v, want one with %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}
