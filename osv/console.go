package osv

import (
	"regexp"
	"strconv"
	"strings"
)

// LineKind says whose a console line is.
type LineKind int

// The kinds of console lines.
const (
	// Boot is OSv's, printed before the program: boot messages and, with
	// --verbose, every environment variable's value. Never the
	// container's output; log it only through Redact.
	Boot LineKind = iota
	// Start is OSv's echo of the command ("Cmdline: …"), printed just
	// before it loads the program: the program starts now.
	Start
	// Output is the program's.
	Output
	// Diagnostic is OSv's, printed while the program runs or after it
	// ended (file system errors, the shutdown).
	Diagnostic
	// End is OSv's report that the program ended; see Console.End.
	End
)

// Exit codes for ends that carry no code of the program's.
const (
	// ExitNotFound is a program OSv could not load, as a shell's
	// "command not found".
	ExitNotFound = 127
	// ExitAborted is a program that crashed (OSv aborted), as a process
	// killed by SIGABRT.
	ExitAborted = 128 + 6
)

// Ending is how the program ended, as the console told.
type Ending struct {
	Code int
	// Reason is "" for a program that returned or exited, else why it did
	// not: "NotFound", "NoRoot" (not found because OSv mounted no root
	// file system from the disk) or "Crashed".
	Reason string
	// Line is the console line that reported it.
	Line string
	// Inferred is set when the program reported nothing and OSv's
	// shutdown began: a return of 0 from main (which OSv does not
	// report) — or a power-off from outside.
	Inferred bool
}

var (
	returnedRe = regexp.MustCompile(`^program (.+) returned (-?\d+)$`)
	exitedRe   = regexp.MustCompile(`^program exited with status (-?\d+)$`)
	loadRe     = regexp.MustCompile(`^Failed to load object: (.*)\. Powering off\.$`)
)

// Console follows an OSv console line by line and tells whose each line is:
// everything before the command's echo ("Cmdline: …", which OSv prints
// just before it loads the program) is OSv's boot, everything after the
// program's end is OSv's shutdown, and between them only the lines OSv's
// drivers print on their own are not the program's. The echo is found by
// its prefix, not compared with the command line: OSv v0.57 was seen to
// print it with bytes changed. No boot line can pose as it: a variable's
// value (printed with --verbose) cannot hold a line break (see Render). The
// zero value is ready; it is not safe for concurrent use.
type Console struct {
	started bool
	noRoot  bool // a root file system failed to mount during the boot
	end     *Ending
}

// rootFailedRe matches OSv's boot lines saying it found no root file system
// on the disk (its auto-discovery tries ROFS, virtio-fs, then ZFS).
var rootFailedRe = regexp.MustCompile(`^(failed to mount /(rofs|virtiofs|zfs), |Could not mount \w+ root filesystem|Could not load and/or initialize /usr/lib/fs/libsolaris\.so)`)

// Line classifies one console line (without its line end).
func (c *Console) Line(l string) LineKind {
	switch {
	case c.end != nil:
		return Diagnostic
	case !c.started:
		if rootFailedRe.MatchString(l) {
			c.noRoot = true
		}
		if strings.HasPrefix(l, "Cmdline: ") {
			c.started = true
			return Start
		}
		if m := loadRe.FindStringSubmatch(l); m != nil {
			// OSv could not even get to the program (a root it could not
			// mount, say).
			c.end = &Ending{Code: ExitNotFound, Reason: "NotFound", Line: l}
			return End
		}
		return Boot
	}
	if e := ending(l); e != nil {
		if e.Reason == "NotFound" && c.noRoot {
			e.Reason = "NoRoot"
		}
		c.end = e
		return End
	}
	switch {
	case strings.HasPrefix(l, "VFS: unmounting "), l == "Powering off.":
		// A program that returned 0 is not reported: OSv shuts down.
		c.end = &Ending{Code: 0, Line: l, Inferred: true}
		return Diagnostic
	case strings.HasPrefix(l, "[virtiofs] "), strings.HasPrefix(l, "[rofs] "), strings.HasPrefix(l, "virtio-fs: "):
		return Diagnostic
	}
	return Output
}

// ending parses a line reporting the program's end, nil if it is not one.
func ending(l string) *Ending {
	if m := returnedRe.FindStringSubmatch(l); m != nil {
		if n, err := strconv.Atoi(m[2]); err == nil {
			return &Ending{Code: n, Line: l}
		}
	}
	if m := exitedRe.FindStringSubmatch(l); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return &Ending{Code: n, Line: l}
		}
	}
	if loadRe.MatchString(l) {
		return &Ending{Code: ExitNotFound, Reason: "NotFound", Line: l}
	}
	// OSv's abort(); a Linux guest's panic.
	if l == "Aborted" || strings.HasPrefix(l, "Kernel panic - not syncing") {
		return &Ending{Code: ExitAborted, Reason: "Crashed", Line: l}
	}
	return nil
}

// Started reports whether the program has started.
func (c *Console) Started() bool { return c.started }

// End returns how the program ended, nil while it runs (or when the console
// has not said).
func (c *Console) End() *Ending { return c.end }

// Redact returns a Boot line fit for a log: the values of environment
// variables (OSv's "Setting in environment: K=V") and the command's
// arguments (its echo) removed.
func Redact(l string) string {
	if kv, ok := strings.CutPrefix(l, "Setting in environment: "); ok {
		k, _, _ := strings.Cut(kv, "=")
		return "Setting in environment: " + k + "=…"
	}
	if rest, ok := strings.CutPrefix(l, "Cmdline: "); ok {
		return "Cmdline: (" + strconv.Itoa(len(rest)) + " bytes)"
	}
	return l
}

// AppPart returns what OSv's loader leaves of line after the loader options
// (and echoes as "Cmdline: …").
func AppPart(line string) string {
	rest := line
	for {
		trimmed := strings.TrimLeft(rest, " \t\n")
		if !strings.HasPrefix(trimmed, "-") {
			if trimmed == "" {
				return trimmed
			}
			return rest
		}
		_, rest = loaderToken(trimmed)
	}
}

// ProgramStartedTypeURL is how the shim tells its clients that a VM's
// program has started (its console printed the Start line): the type URL
// of the Info of the VM's first process in the task's Pids. A client (the
// agent's readiness) reads it through containerd's ListPids; a VM whose
// program has not started yet, or has no console, reports no Info. The
// Info's value is empty.
const ProgramStartedTypeURL = "feather.dev/osv/program-started"
