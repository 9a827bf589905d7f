package guestinit

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPrograms(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"b": "bee\n", "a": "ay\n", "c/d": ""} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setFixture(t, &procMeminfo, "meminfo")
	disk := filepath.Join(dir, "disk")
	if err := os.WriteFile(disk, bytes.Repeat([]byte{'d'}, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		name     string
		args     []string
		want     string
		wantCode int
	}{
		{"hello", []string{"/hello"}, "hello from feather guest\n", 0},
		{"cat", []string{"/cat", "a", "b"}, "ay\nbee\n", 0},
		{"cat missing", []string{"/cat", "a", "nope"}, "ay\ncat: open nope: no such file or directory\n", 1},
		{"ls", []string{"/ls", dir}, "a\nb\nc\ndisk\n", 0},
		{"ls cwd", []string{"/ls"}, "a\nb\nc\ndisk\n", 0},
		{"ls missing", []string{"/ls", "nope"}, "ls: open nope: no such file or directory\n", 1},
		{"exit", []string{"/exit", "7"}, "", 7},
		{"exit 0", []string{"/exit", "0"}, "", 0},
		{"exit range", []string{"/exit", "256"}, "exit: invalid code \"256\" (want 0..255)\n", 2},
		{"exit usage", []string{"/exit"}, "usage: /exit CODE\n", 2},
		{"sleep", []string{"/sleep", "0.01"}, "", 0},
		{"sleep invalid", []string{"/sleep", "soon"}, "sleep: invalid time \"soon\"\n", 2},
		{"httpd port", []string{"/httpd", "http"}, "httpd: invalid port \"http\"\n", 2},
		{"meminfo", []string{"/meminfo"}, "MemTotal: 223620 kB\n", 0},
		{"burn", []string{"/burn", "0.05"}, "burning one CPU\n", 0},
		{"burn invalid", []string{"/burn", "x"}, "burn: invalid time \"x\"\n", 2},
		{"alloc", []string{"/alloc", "2", "0"}, "allocated 2 MiB\n", 0},
		{"alloc invalid", []string{"/alloc", "lots"}, "alloc: invalid size \"lots\"\n", 2},
		{"alloc usage", []string{"/alloc"}, "usage: /alloc MIB [SECONDS]\n", 2},
		{"fill", []string{"/fill", "disk", "2"}, "wrote 2 MiB to disk\n", 0},
		{"fill more than the disk", []string{"/fill", "disk", "4"}, "fill: disk has 3145728 bytes, fewer than 4 MiB (<nil>)\n", 1},
		{"fill and hold", []string{"/fill", "disk", "2", "0.01"}, "wrote 2 MiB to disk\n", 0},
		{"fill invalid time", []string{"/fill", "disk", "2", "soon"}, "fill: invalid time \"soon\"\n", 2},
		{"fill usage", []string{"/fill", "disk"}, "usage: /fill DEVICE MIB [SECONDS]\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := Programs[Name(tc.args[0])](tc.args, &out)
			if out.String() != tc.want || code != tc.wantCode {
				t.Errorf("%v: output %q, code %d; want %q, %d", tc.args, out.String(), code, tc.want, tc.wantCode)
			}
		})
	}
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(bytes.Repeat([]byte{'d'}, 1<<20), bytes.Repeat([]byte{'f'}, 2<<20)...); !bytes.Equal(b, want) {
		t.Errorf("/fill disk 2 did not write the last 2 MiB of the disk, and only them")
	}
}

// setFixture points *v at testdata/name for the test.
func setFixture(t *testing.T, v *string, name string) {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	old := *v
	*v = p
	t.Cleanup(func() { *v = old })
}

func TestArgs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("ZZ_FEATHER", "last")
	t.Setenv("AA_FEATHER", "first")
	var out bytes.Buffer
	if code := printArgs([]string{"/args", "x", "y z"}, &out); code != 0 {
		t.Fatalf("code %d", code)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{"arg[0]=/args", "arg[1]=x", "arg[2]=y z", "cwd=" + dir}
	if len(lines) < len(want)+2 || strings.Join(lines[:len(want)], "|") != strings.Join(want, "|") {
		t.Fatalf("output starts\n%s\nwant\n%s", out.String(), strings.Join(want, "\n"))
	}
	env := lines[len(want):]
	if !slices.IsSorted(env) || !slices.Contains(env, "env AA_FEATHER=first") || !slices.Contains(env, "env ZZ_FEATHER=last") {
		t.Errorf("environment lines not sorted or incomplete:\n%s", strings.Join(env, "\n"))
	}
}

func TestCountCPUs(t *testing.T) {
	for _, tc := range []struct {
		list    string
		want    int
		wantErr bool
	}{
		{"0", 1, false},
		{"0-3", 4, false},
		{"0-3,6", 5, false},
		{"0,2,4-5", 4, false},
		{"", 0, true},
		{"3-1", 0, true},
		{"a-b", 0, true},
	} {
		got, err := countCPUs(tc.list)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("countCPUs(%q) = %d, %v; want %d, error %v", tc.list, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestNproc(t *testing.T) {
	online := filepath.Join(t.TempDir(), "online")
	if err := os.WriteFile(online, []byte("0-2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := cpuOnline
	cpuOnline = online
	t.Cleanup(func() { cpuOnline = old })
	var out bytes.Buffer
	if code := nproc(nil, &out); code != 0 || out.String() != "3\n" {
		t.Errorf("nproc: %q, code %d; want \"3\\n\", 0", out.String(), code)
	}
}

func TestServeHello(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serveHello(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveHello: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/", http.StatusOK, Hello},
		{"/other", http.StatusNotFound, ""},
	} {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.body != "" && string(b) != tc.body) {
			t.Errorf("GET %s: %d %q; want %d %q", tc.path, resp.StatusCode, b, tc.code, tc.body)
		}
	}
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "hi\nthere\n")
	}))
	defer srv.Close()
	old := getTimeout
	getTimeout = 0
	t.Cleanup(func() { getTimeout = old })
	for _, tc := range []struct {
		name     string
		args     []string
		want     string
		wantCode int
	}{
		{"ok", []string{"/get", srv.URL + "/"}, "GET " + srv.URL + "/: 200 hi there\n", 0},
		{"404", []string{"/get", srv.URL + "/x"}, "GET " + srv.URL + "/x: 404 404 page not found\n", 0},
		{"usage", []string{"/get"}, "usage: /get URL...\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := get(tc.args, &out)
			if out.String() != tc.want || code != tc.wantCode {
				t.Errorf("%v: %q, %d; want %q, %d", tc.args, out.String(), code, tc.want, tc.wantCode)
			}
		})
	}
	var out bytes.Buffer
	if code := get([]string{"/get", "http://127.0.0.1:1/"}, &out); code != 1 || !strings.HasPrefix(out.String(), "GET http://127.0.0.1:1/: ") {
		t.Errorf("unreachable: %q, %d", out.String(), code)
	}
}
