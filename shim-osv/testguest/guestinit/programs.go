package guestinit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Hello is what /hello prints and /httpd serves.
const Hello = "hello from feather guest\n"

// Program is one of the guest's programs. It writes to out, reads files
// relative to the process's working directory and returns the exit code.
type Program func(args []string, out io.Writer) int

// Programs are the guest's programs, by name. The initramfs links /NAME to
// /init for each; the binary dispatches on its argv[0].
var Programs = map[string]Program{
	"hello":   hello,
	"args":    printArgs,
	"cat":     cat,
	"ls":      ls,
	"sleep":   sleep,
	"httpd":   httpd,
	"get":     get,
	"exit":    exit,
	"meminfo": meminfo,
	"nproc":   nproc,
	"burn":    burn,
	"alloc":   alloc,
	"fill":    fill,
}

// ProgramNames lists Programs sorted.
func ProgramNames() []string {
	names := make([]string, 0, len(Programs))
	for n := range Programs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func hello(_ []string, out io.Writer) int {
	fmt.Fprint(out, Hello)
	return 0
}

// printArgs prints arg[i]=… for each argument (arg[0] the program), then
// cwd=…, then the environment sorted, one env K=V a line.
func printArgs(args []string, out io.Writer) int {
	for i, a := range args {
		fmt.Fprintf(out, "arg[%d]=%s\n", i, a)
	}
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "?" + err.Error()
	}
	fmt.Fprintf(out, "cwd=%s\n", cwd)
	env := os.Environ()
	slices.Sort(env)
	for _, e := range env {
		fmt.Fprintf(out, "env %s\n", e)
	}
	return 0
}

func cat(args []string, out io.Writer) int {
	code := 0
	for _, name := range args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(out, "cat: %v\n", err)
			code = 1
			continue
		}
		_, err = io.Copy(out, f)
		f.Close()
		if err != nil {
			fmt.Fprintf(out, "cat: %s: %v\n", name, err)
			code = 1
		}
	}
	return code
}

func ls(args []string, out io.Writer) int {
	dir := "."
	if len(args) > 1 {
		dir = args[1]
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		fmt.Fprintf(out, "ls: %v\n", err)
		return 1
	}
	for _, e := range entries {
		fmt.Fprintln(out, e.Name())
	}
	return 0
}

func sleep(args []string, out io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(out, "usage: /sleep SECONDS")
		return 2
	}
	s, err := strconv.ParseFloat(args[1], 64)
	if err != nil || s < 0 {
		fmt.Fprintf(out, "sleep: invalid time %q\n", args[1])
		return 2
	}
	time.Sleep(time.Duration(s * float64(time.Second)))
	return 0
}

// burn keeps one CPU busy, for SECONDS or, without, until killed.
func burn(args []string, out io.Writer) int {
	var until time.Time
	switch len(args) {
	case 1:
	case 2:
		s, err := strconv.ParseFloat(args[1], 64)
		if err != nil || s < 0 {
			fmt.Fprintf(out, "burn: invalid time %q\n", args[1])
			return 2
		}
		until = time.Now().Add(time.Duration(s * float64(time.Second)))
	default:
		fmt.Fprintln(out, "usage: /burn [SECONDS]")
		return 2
	}
	fmt.Fprintln(out, "burning one CPU")
	for n := 0; ; n++ {
		if n%(1<<20) == 0 && !until.IsZero() && time.Now().After(until) {
			return 0
		}
	}
}

// alloc allocates MiB mebibytes, writes every page of them, says so, and
// holds them for SECONDS or, without, until killed.
func alloc(args []string, out io.Writer) int {
	if len(args) < 2 || len(args) > 3 {
		fmt.Fprintln(out, "usage: /alloc MIB [SECONDS]")
		return 2
	}
	mib, err := strconv.Atoi(args[1])
	if err != nil || mib < 0 {
		fmt.Fprintf(out, "alloc: invalid size %q\n", args[1])
		return 2
	}
	hold := time.Duration(1<<63 - 1)
	if len(args) == 3 {
		s, err := strconv.ParseFloat(args[2], 64)
		if err != nil || s < 0 {
			fmt.Fprintf(out, "alloc: invalid time %q\n", args[2])
			return 2
		}
		hold = time.Duration(s * float64(time.Second))
	}
	buf := make([]byte, mib<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	fmt.Fprintf(out, "allocated %d MiB\n", mib)
	time.Sleep(hold)
	runtime.KeepAlive(buf)
	return 0
}

// fill writes MIB mebibytes of the byte 'f' at the end of DEVICE (the
// boot disk /dev/vda, whose boot partition lies at its start, or a file),
// syncs them, prints "wrote MIB MiB to DEVICE" — a VM's disk writes — and
// then runs SECONDS more (until killed with a negative SECONDS).
func fill(args []string, out io.Writer) int {
	if len(args) < 3 || len(args) > 4 {
		fmt.Fprintln(out, "usage: /fill DEVICE MIB [SECONDS]")
		return 2
	}
	mib, err := strconv.Atoi(args[2])
	if err != nil || mib < 0 {
		fmt.Fprintf(out, "fill: invalid size %q\n", args[2])
		return 2
	}
	var hold time.Duration
	if len(args) == 4 {
		s, err := strconv.ParseFloat(args[3], 64)
		if err != nil {
			fmt.Fprintf(out, "fill: invalid time %q\n", args[3])
			return 2
		}
		hold = time.Duration(s * float64(time.Second))
		if s < 0 {
			hold = time.Duration(1<<63 - 1)
		}
	}
	f, err := os.OpenFile(args[1], os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintf(out, "fill: %v\n", err)
		return 1
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size < int64(mib)<<20 {
		fmt.Fprintf(out, "fill: %s has %d bytes, fewer than %d MiB (%v)\n", args[1], size, mib, err)
		return 1
	}
	chunk := bytes.Repeat([]byte{'f'}, 1<<20)
	for i := range int64(mib) {
		if _, err := f.WriteAt(chunk, size-int64(mib)<<20+i<<20); err != nil {
			fmt.Fprintf(out, "fill: %v\n", err)
			return 1
		}
	}
	if err := f.Sync(); err != nil {
		fmt.Fprintf(out, "fill: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "wrote %d MiB to %s\n", mib, args[1])
	time.Sleep(hold)
	return 0
}

func exit(args []string, out io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(out, "usage: /exit CODE")
		return 2
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 || n > 255 {
		fmt.Fprintf(out, "exit: invalid code %q (want 0..255)\n", args[1])
		return 2
	}
	return n
}

// httpd serves Hello on GET / at the port, printing "listening on :PORT"
// once it accepts connections. It runs until killed.
func httpd(args []string, out io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(out, "usage: /httpd PORT")
		return 2
	}
	if _, err := strconv.ParseUint(args[1], 10, 16); err != nil {
		fmt.Fprintf(out, "httpd: invalid port %q\n", args[1])
		return 2
	}
	ln, err := net.Listen("tcp", ":"+args[1])
	if err != nil {
		fmt.Fprintf(out, "httpd: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "listening on :%s\n", args[1])
	if err := serveHello(context.Background(), ln); err != nil {
		fmt.Fprintf(out, "httpd: %v\n", err)
		return 1
	}
	return 0
}

// serveHello serves Hello on ln until ctx ends.
func serveHello(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, Hello)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Files the memory and CPU programs read; tests point them at fixtures.
var (
	procMeminfo = "/proc/meminfo"
	cpuOnline   = "/sys/devices/system/cpu/online"
)

// meminfo prints the MemTotal line of /proc/meminfo as "MemTotal: N kB".
func meminfo(_ []string, out io.Writer) int {
	f, err := os.Open(procMeminfo)
	if err != nil {
		fmt.Fprintf(out, "meminfo: %v\n", err)
		return 1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			fmt.Fprintf(out, "MemTotal: %s kB\n", f[1])
			return 0
		}
	}
	fmt.Fprintf(out, "meminfo: no MemTotal in %s\n", procMeminfo)
	return 1
}

// nproc prints the number of online CPUs (from the kernel's online list,
// e.g. "0-3,6"; the Go runtime's count when that is unreadable).
func nproc(_ []string, out io.Writer) int {
	n := runtime.NumCPU()
	if b, err := os.ReadFile(cpuOnline); err == nil {
		if c, err := countCPUs(strings.TrimSpace(string(b))); err == nil {
			n = c
		}
	}
	fmt.Fprintln(out, n)
	return 0
}

// countCPUs counts the CPUs of a kernel CPU list such as "0-3,6".
func countCPUs(list string) (int, error) {
	n := 0
	for _, r := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("cpu list %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("cpu list %q: bad range %q", list, r)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// Name returns the program name that argv0 asks for: its base name.
func Name(argv0 string) string { return filepath.Base(argv0) }

// getTimeout bounds each URL's tries: the network may take a moment to
// answer after boot (ARP, a peer still starting).
var getTimeout = 15 * time.Second

// get fetches each URL (GET), retrying for up to getTimeout, and prints
// "GET URL: STATUS BODY" a line each, the body's line breaks as spaces; it
// returns 1 if any failed.
func get(args []string, out io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(out, "usage: /get URL...")
		return 2
	}
	code := 0
	c := &http.Client{Timeout: 2 * time.Second}
	for _, url := range args[1:] {
		deadline := time.Now().Add(getTimeout)
		for {
			resp, err := c.Get(url)
			if err == nil {
				b, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				err = rerr
				if err == nil {
					fmt.Fprintf(out, "GET %s: %d %s\n", url, resp.StatusCode, strings.TrimSpace(strings.ReplaceAll(string(b), "\n", " ")))
					break
				}
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(out, "GET %s: %v\n", url, err)
				code = 1
				break
			}
			time.Sleep(200 * time.Millisecond) // retry interval while the peer comes up
		}
	}
	return code
}
