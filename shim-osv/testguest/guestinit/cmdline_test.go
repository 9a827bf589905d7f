package guestinit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestParse(t *testing.T) {
	argv := func(a ...string) Command { return Command{Argv: a} }
	bg := func(a ...string) Command { return Command{Argv: a, Background: true} }
	for _, tc := range []struct {
		name string
		in   string
		want *Config
	}{
		{"one program", "/hello", &Config{Commands: []Command{argv("/hello")}}},
		{"arguments", "/args a b  c", &Config{Commands: []Command{argv("/args", "a", "b", "c")}}},
		{"surrounding white space", " \t/args a ", &Config{Commands: []Command{argv("/args", "a")}}},
		{"tabs are part of a bare word, as in OSv", "/args a\tb\n", &Config{Commands: []Command{argv("/args", "a\tb\n")}}},
		{"double quotes group", `/args "y z" x`, &Config{Commands: []Command{argv("/args", "y z", "x")}}},
		{"quotes inside a word are bytes", `/args a"b c"d`, &Config{Commands: []Command{argv("/args", `a"b`, `c"d`)}}},
		{"escapes", `/args "q\"q" x\ty "b\\s"`, &Config{Commands: []Command{argv("/args", `q"q`, "x\ty", `b\s`)}}},
		{"variables expanded", `--env=A=1 /args $A x$A $B`, &Config{Env: []string{"A=1"}, Commands: []Command{argv("/args", "1", "x1", "")}}},
		{"empty quotes are an argument", `/args "" x`, &Config{Commands: []Command{argv("/args", "", "x")}}},
		{"single quotes do not group", `/args 'y z'`, &Config{Commands: []Command{argv("/args", "'y", "z'")}}},
		{"unterminated quote is a word", `/args "a`, &Config{Commands: []Command{argv("/args", `"a`)}}},
		{"separators inside quotes", `/args "a;b&c"`, &Config{Commands: []Command{argv("/args", "a;b&c")}}},
		{"sequence", "/a; /b 1;/c", &Config{Commands: []Command{argv("/a"), argv("/b", "1"), argv("/c")}}},
		{"background", "/httpd 80 & /sleep 1", &Config{Commands: []Command{bg("/httpd", "80"), argv("/sleep", "1")}}},
		{"OSv detached background", "/httpd 80 &! /sleep 1", &Config{Commands: []Command{bg("/httpd", "80"), argv("/sleep", "1")}}},
		{"env and cwd", "--env=A=1 --env=B=x=y --cwd=/tmp /args", &Config{
			Env: []string{"A=1", "B=x=y"}, Cwd: "/tmp", Commands: []Command{argv("/args")}}},
		{"escaped env value", `--env=A=a\ b /args`, &Config{Env: []string{"A=a b"}, Commands: []Command{argv("/args")}}},
		{"empty env value", `--env=A= /args`, &Config{Env: []string{"A="}, Commands: []Command{argv("/args")}}},
		{"mounts", "--mount-fs=virtiofs,/dev/virtiofs0,/data --mount-fs=virtiofs,/dev/virtiofs1,/cfg /ls /data", &Config{
			Mounts:   []Mount{{"virtiofs", "/dev/virtiofs0", "/data"}, {"virtiofs", "/dev/virtiofs1", "/cfg"}},
			Commands: []Command{argv("/ls", "/data")}}},
		{"network", "--ip=eth0,10.99.0.2,255.255.255.0 --defaultgw=10.99.0.1 --nameserver=10.96.0.10 /httpd 80", &Config{
			Net:        &NetConfig{Iface: "eth0", Prefix: netip.MustParsePrefix("10.99.0.2/24")},
			Gateway:    netip.MustParseAddr("10.99.0.1"),
			Nameserver: netip.MustParseAddr("10.96.0.10"),
			Commands:   []Command{argv("/httpd", "80")}}},
		{"rootfs and verbose", "--rootfs=rofs --verbose /hello", &Config{Rootfs: "rofs", Verbose: true, Commands: []Command{argv("/hello")}}},
		{"known OSv options ignored", "--nomount --maxnic=1 /hello", &Config{Ignored: []string{"--nomount", "--maxnic=1"}, Commands: []Command{argv("/hello")}}},
		{"options only lead the first command", "/a; --env=A=1 /b", &Config{Commands: []Command{argv("/a"), argv("--env=A=1", "/b")}}},
		{"a separator is part of an option", "--env=A=1; /a", &Config{Env: []string{"A=1;"}, Commands: []Command{argv("/a")}}},
		{"option after program is an argument", "/args --env=A=1", &Config{Commands: []Command{argv("/args", "--env=A=1")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "names no program"},
		{"only options", "--env=A=1 --verbose", "names no program"},
		{"only separators", " ; ; ", "names no program"},
		{"separator first", ";; /a", "follows no command"},
		{"non-ASCII", "/args ü", "ASCII only"},
		{"unknown option", "--frobnicate /a", "unknown option --frobnicate"},
		{"env without value", "--env /a", "needs a value"},
		{"env without name", "--env==1 /a", "--env=NAME=VALUE"},
		{"env without =", "--env=A /a", "--env=NAME=VALUE"},
		{"cwd without value", "--cwd= /a", "needs a value"},
		{"mount-fs fields", "--mount-fs=virtiofs,/dev/virtiofs0 /a", "want --mount-fs"},
		{"mount-fs type", "--mount-fs=nfs,srv:/x,/data /a", `type "nfs" is not supported`},
		{"ip fields", "--ip=eth0,10.0.0.2 /a", "IFACE,ADDR,NETMASK"},
		{"ip address", "--ip=eth0,10.0.0.256,255.255.255.0 /a", "not an IPv4 address"},
		{"ip netmask", "--ip=eth0,10.0.0.2,24 /a", "not a dotted IPv4 netmask"},
		{"ip netmask contiguous", "--ip=eth0,10.0.0.2,255.0.255.0 /a", "not contiguous"},
		{"gateway address", "--ip=eth0,10.0.0.2,255.255.255.0 --defaultgw=gw /a", "want an IPv4 address"},
		{"gateway without ip", "--defaultgw=10.0.0.1 /a", "--defaultgw needs --ip"},
		{"nameserver v6", "--nameserver=::1 /a", "want an IPv4 address"},
		{"verbose with value", "--verbose=1 /a", "takes no value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestParseGolden parses the command lines of testdata/cmdlines.txt (one a
// line; real OSv command lines and what the shim writes) and compares with
// testdata/cmdlines.golden.json; -update rewrites it.
func TestParseGolden(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "cmdlines.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type result struct {
		Cmdline string
		Config  *Config `json:",omitempty"`
		Error   string  `json:",omitempty"`
	}
	var got []result
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := result{Cmdline: line}
		if r.Config, err = Parse(line); err != nil {
			r.Error = err.Error()
		}
		got = append(got, r)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(got); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	golden := filepath.Join("testdata", "cmdlines.golden.json")
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestParseGolden -update to create it)", err)
	}
	if string(b) != string(want) {
		t.Errorf("parsed command lines differ from %s (if intended: go test -run TestParseGolden -update):\n%s", golden, b)
	}
}

func TestMountTag(t *testing.T) {
	for _, tc := range []struct{ dev, want string }{
		{"/dev/virtiofs0", "virtiofs0"},
		{"/dev/virtiofs12", "virtiofs12"},
		{"virtiofs3", "virtiofs3"},
	} {
		if got := (Mount{Device: tc.dev}).Tag(); got != tc.want {
			t.Errorf("Mount{Device: %q}.Tag() = %q, want %q", tc.dev, got, tc.want)
		}
	}
}
