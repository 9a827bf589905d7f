package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQEMUEnv, set in a test's environment (which the VM's QEMU inherits),
// makes the test binary, run as qemu.System, play QEMU: it serves QMP on
// the -qmp socket and prints the console of an OSv guest booted directly
// (-append) running a program that prints "hello". Its value is the guest:
//
//	run       prints a line, then runs until system_powerdown or quit
//	exit3     prints a line and "program /hello returned 3", then powers off
//	slowboot  opens its QMP socket only after a minute (a boot that hangs)
//	halt      prints a line and "Aborted", then runs on (OSv halted without
//	          --power-off-on-abort: QEMU stays up)
//	kvmabort  under KVM (-machine …accel=kvm) aborts at once, as QEMU does
//	          on a host whose KVM refuses -cpu host's MSRs; else as run
const fakeQEMUEnv = "FEATHER_TEST_FAKE_QEMU"

func TestMain(m *testing.M) {
	if guest := os.Getenv(fakeQEMUEnv); guest != "" {
		fakeQEMU(guest, os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

// fakeQEMU is the fake QEMU's main.
func fakeQEMU(guest string, args []string) {
	var sock, cmdline string
	for i, a := range args {
		if i+1 == len(args) {
			break
		}
		switch a {
		case "-qmp":
			sock = strings.TrimPrefix(strings.Split(args[i+1], ",")[0], "unix:")
		case "-append":
			cmdline = args[i+1]
		case "-machine":
			if guest == "kvmabort" && strings.Contains(args[i+1], "accel=kvm") {
				fmt.Fprintln(os.Stderr, "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69")
				os.Exit(134)
			}
		}
	}
	if sock == "" {
		fmt.Fprintln(os.Stderr, "fake qemu: no -qmp")
		os.Exit(1)
	}
	if guest == "slowboot" {
		time.Sleep(time.Minute)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		os.Exit(1)
	}
	var out sync.Mutex
	console := func(line string) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprint(os.Stdout, line+"\r\n")
	}
	poweroff := func(reason string) {
		console("Powering off.")
		os.Exit(0)
	}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serveQMP(conn, poweroff)
		}
	}()
	// As OSv: its banner, the echo of the command (the command line after
	// the loader's options), then the program's output.
	console("OSv v0.57.0")
	app := cmdline
	for {
		t := strings.TrimLeft(app, " ")
		if !strings.HasPrefix(t, "-") {
			break
		}
		_, app, _ = strings.Cut(t, " ")
	}
	console("Cmdline: " + app)
	console("hello")
	if guest == "halt" {
		console("Aborted")
	}
	if guest == "exit3" {
		console("program /hello returned 3")
		time.Sleep(50 * time.Millisecond)
		poweroff("guest-shutdown")
	}
	select {}
}

// serveQMP answers one QMP client: the greeting, qmp_capabilities, stop,
// cont, system_powerdown and quit (the last two end the process).
func serveQMP(conn net.Conn, poweroff func(reason string)) {
	defer conn.Close()
	var mu sync.Mutex
	send := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.Marshal(v)
		conn.Write(append(b, '\r', '\n'))
	}
	send(map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}},
		"capabilities": []string{},
	}})
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return
		}
		shutdown := func(reason string) {
			send(map[string]any{"event": "SHUTDOWN", "data": map[string]any{"guest": reason == "guest-shutdown", "reason": reason},
				"timestamp": map[string]int64{"seconds": time.Now().Unix(), "microseconds": 0}})
			poweroff(reason)
		}
		switch req.Execute {
		case "qmp_capabilities", "stop", "cont":
			send(map[string]any{"return": map[string]any{}, "id": req.ID})
		case "system_powerdown":
			send(map[string]any{"return": map[string]any{}, "id": req.ID})
			shutdown("guest-shutdown")
		case "quit":
			send(map[string]any{"return": map[string]any{}, "id": req.ID})
			shutdown("host-qmp-quit")
		default:
			send(map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": req.Execute}, "id": req.ID})
		}
	}
}
