package osv

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestRender(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.88.0.0/16")
	addr := &net.IPNet{IP: net.ParseIP("10.88.0.7"), Mask: subnet.Mask}
	for _, tc := range []struct {
		name    string
		c       Cmdline
		want    string
		invalid bool
	}{
		{"plain", Cmdline{Args: []string{"/hello"}}, "/hello", false},
		{"args grouped", Cmdline{Args: []string{"/args", "x", "y z", "", "a;b", "it's", "a!b", `q"q`, `back\slash`}},
			`/args x "y z" "" "a;b" "it's" "a!b" "q\"q" "back\\slash"`, false},
		{"dollar and non-ASCII through variables", Cmdline{Args: []string{"/args", "$HOME", "grüß"}},
			`--env=FEATHER_ARG_1=$HOME --env=FEATHER_ARG_2=grüß /args $FEATHER_ARG_1 $FEATHER_ARG_2`, false},
		{"env cwd verbose", Cmdline{Args: []string{"/args"}, Env: []string{"PATH=/", "A=b c", `B=x\y`}, Cwd: "/my dir", Verbose: true, PowerOffOnAbort: true},
			`--verbose --power-off-on-abort --env=PATH=/ --env=A=b\ c --env=B=x\\y --cwd=/my\ dir /args`, false},
		{"image's loader options stay options", Cmdline{Args: []string{"--rootfs=rofs", "/minimal"}, Verbose: true},
			"--verbose --rootfs=rofs /minimal", false},
		{"root cwd omitted", Cmdline{Args: []string{"/x"}, Cwd: "/"}, "/x", false},
		{"mounts", Cmdline{Args: []string{"/ls", "/data"}, Mounts: []Mount{{0, "/data"}, {1, "/etc/my config"}}},
			`--mount-fs=virtiofs,/dev/virtiofs0,/data --mount-fs=virtiofs,/dev/virtiofs1,/etc/my\ config /ls /data`, false},
		{"network", Cmdline{Args: []string{"/httpd", "8080"}, Network: &Network{Interface: "eth0", Addr: addr,
			Gateway: net.ParseIP("10.88.0.1"), Nameservers: []net.IP{net.ParseIP("10.96.0.10"), net.ParseIP("10.96.0.11")}}},
			"--ip=eth0,10.88.0.7,255.255.0.0 --defaultgw=10.88.0.1 --nameserver=10.96.0.10 /httpd 8080", false},
		{"no args", Cmdline{}, "", true},
		{"only options", Cmdline{Args: []string{"--rootfs=rofs"}}, "", true},
		{"newline in arg", Cmdline{Args: []string{"/x", "a\nb"}}, "", true},
		{"NUL in arg", Cmdline{Args: []string{"/x", "a\x00b"}}, "", true},
		{"newline in env", Cmdline{Args: []string{"/x"}, Env: []string{"A=1\n2"}}, "", true},
		{"env without =", Cmdline{Args: []string{"/x"}, Env: []string{"NOVALUE"}}, "", true},
		{"env of ours", Cmdline{Args: []string{"/x"}, Env: []string{"FEATHER_ARG_1=x"}}, "", true},
		{"comma in mount", Cmdline{Args: []string{"/x"}, Mounts: []Mount{{0, "/a,b"}}}, "", true},
		{"ipv6", Cmdline{Args: []string{"/x"}, Network: &Network{Interface: "eth0",
			Addr: &net.IPNet{IP: net.ParseIP("fd00::2"), Mask: net.CIDRMask(64, 128)}}}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.c.Render()
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("Render() = %q, %v; want ErrInvalidArgument", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want+tailPad {
				t.Errorf("Render() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestCheckLength(t *testing.T) {
	if err := CheckLength(strings.Repeat("a", MaxDirect), MaxDirect); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := CheckLength(strings.Repeat("a", MaxDirect+1), MaxDirect)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "3648 bytes, 1 over") {
		t.Errorf("over the limit: %v", err)
	}
}

// roundTrip renders args and env, parses the line back as OSv would and
// returns the program's argv and environment.
func roundTrip(t testing.TB, args, env []string) (gotArgs, gotEnv []string, err error) {
	line, err := Cmdline{Args: args, Env: env, Verbose: true}.Render()
	if err != nil {
		return nil, nil, err
	}
	l, err := Parse(line)
	if err != nil {
		t.Fatalf("Parse(Render()) of %q: %v", line, err)
	}
	if len(l.Commands) != 1 {
		t.Fatalf("line %q parses into %d commands", line, len(l.Commands))
	}
	all := l.Env()
	for _, kv := range all {
		if !strings.HasPrefix(kv, ArgVarPrefix) {
			gotEnv = append(gotEnv, kv)
		}
	}
	return Expand(l.Commands[0].Words, EnvLookup(all)), gotEnv, nil
}

func TestRoundTrip(t *testing.T) {
	hard := []string{"", " ", "  two  spaces ", "\t", `"`, `""`, `\`, `\\`, `\"`, `\n`, `a\tb`, "'", `'sq'`, ";", "&", "&!", "!",
		"a;b&c!d", "$", "$HOME", "a$b", "${X}", "ü", "日本", "\x01\x7f", "\r", "-x", "--env=A=B", "=", "a=b", `C:\path`}
	args := append([]string{"/args"}, hard...)
	var env []string
	for i, v := range hard {
		env = append(env, "V"+string(rune('A'+i))+"="+v)
	}
	gotArgs, gotEnv, err := roundTrip(t, args, env)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotArgs, args) {
		t.Errorf("args:\n got %q\nwant %q", gotArgs, args)
	}
	if !slices.Equal(gotEnv, env) {
		t.Errorf("env:\n got %q\nwant %q", gotEnv, env)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("/args", "a b", "K", "v w")
	f.Add("/x", `q"\`, "A", "$B;&!")
	f.Add("/ü", "\t", "A_B", "")
	f.Fuzz(func(t *testing.T, prog, arg, key, value string) {
		if prog == "" || strings.HasPrefix(prog, "-") || key == "" || strings.Contains(key, "=") || strings.HasPrefix(key, ArgVarPrefix) {
			return // not a program, not a variable: Render refuses these, tested above
		}
		args := []string{prog, arg}
		env := []string{key + "=" + value}
		gotArgs, gotEnv, err := roundTrip(t, args, env)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) || !strings.ContainsAny(prog+arg+key+value, "\x00\n") {
				t.Fatalf("Render(%q, %q): %v", args, env, err)
			}
			return
		}
		if !slices.Equal(gotArgs, args) || !slices.Equal(gotEnv, env) {
			t.Fatalf("round trip of %q %q gave %q %q", args, env, gotArgs, gotEnv)
		}
	})
}
