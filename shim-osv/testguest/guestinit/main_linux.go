package guestinit

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Main runs the guest binary with its argv and returns the exit code. As
// PID 1 it is the guest's init and never returns; otherwise argv[0] names the
// program to run (/args, /cat, …: links to the binary). For tests on a host,
// "guest-init PROGRAM ARGS…" runs a program too.
func Main(args []string, stdout io.Writer) int {
	if os.Getpid() == 1 {
		Init()
	}
	if len(args) == 0 {
		args = []string{"guest-init"}
	}
	if p, ok := Programs[Name(args[0])]; ok {
		return p(args, stdout)
	}
	if len(args) > 1 {
		if p, ok := Programs[args[1]]; ok {
			return p(args[1:], stdout)
		}
	}
	fmt.Fprintf(stdout, "usage: %s PROGRAM [ARG…], or run as PID 1 of the Feather test guest\nprograms: %s\n",
		Name(args[0]), strings.Join(ProgramNames(), " "))
	return 2
}
