// Package stdio gives a container an input: a helper process of its own
// ([Serve], `feather-cri-log stdio …`) owns the container's standard streams
// as fifos — it writes stdout and stderr to the container's CRI log file, as
// the binary:// logger does for the other containers, and holds the write end
// of stdin, which kubectl attach sessions reach through a unix socket
// ([Dial]).
//
// Why a helper: containerd's runc shim does not connect a task's stdin when
// its output goes to a binary:// logger (only a terminal's console is wired
// then), so a container with `stdin: true` gets fifos instead, and someone
// must read them. The agent could, but its restart would stop the container's
// output (and so the container, once the pipe is full) and close its stdin.
// The helper runs in a session of its own, outlives the agent as the shim and
// the logger do, and ends once the container's output has ended (the task is
// gone): it then closes stdin and the log and removes its directory.
//
// A directory ([Paths]) holds the three fifos and the socket. Each connection
// to the socket is one attach session: what it sends is written to the
// container's stdin. When a session's input ends and the container is
// `stdinOnce`, stdin is closed, as kubelet does after the first attach
// session, and later sessions get no input; for a container with a terminal
// the end of input is sent as the terminal's end-of-file character (^D)
// instead, since closing a console's input hangs the terminal up (containerd's
// shim shuts the console down) and would lose the output still to come.
package stdio

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strconv"
	"time"

	"github.com/feather-edge/feather/kubelet/logs"
)

// Mode is the first argument that makes feather-cri-log (or the agent's
// binary) run [Serve] with the rest of its arguments ([Options.Args]).
const Mode = "stdio"

// Paths are the files of one container's helper, in one directory.
type Paths struct {
	Dir                   string
	Stdin, Stdout, Stderr string // fifos
	Socket                string // attach sessions connect here
}

// PathsFor returns the helper paths of container id under root. The
// directory is named for a hash of id, so that the socket's path stays
// within the 108 bytes a unix socket address may have.
func PathsFor(root, id string) Paths {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return pathsIn(filepath.Join(root, strconv.FormatUint(h.Sum64(), 16)))
}

// pathsIn returns the helper paths in directory dir.
func pathsIn(dir string) Paths {
	return Paths{
		Dir:    dir,
		Stdin:  filepath.Join(dir, "in"),
		Stdout: filepath.Join(dir, "out"),
		Stderr: filepath.Join(dir, "err"),
		Socket: filepath.Join(dir, "sock"),
	}
}

// Options configure one helper.
type Options struct {
	// Dir is the helper's directory (Paths.Dir); it is created, and
	// removed when the helper ends.
	Dir string
	// Log is the CRI log file, rotated as Rotation says.
	Log      string
	Rotation logs.Rotation
	// TTY says the container has a terminal: its one output stream is
	// stdout, and the end of a session's input is sent as ^D.
	TTY bool
	// StdinOnce closes stdin when the first attach session's input ends.
	StdinOnce bool
	// OpenTimeout is how long the helper waits for containerd's shim to
	// open the fifos (it does when the task is created, right after the
	// helper is ready) before it gives up and ends, so that a task never
	// created leaves no helper, even when the agent that started it is
	// gone; 0 is DefaultOpenTimeout.
	OpenTimeout time.Duration
}

// DefaultOpenTimeout is Options.OpenTimeout's default.
const DefaultOpenTimeout = time.Minute

// The arguments of the helper, as "key value" pairs.
const (
	argDir       = "dir"
	argTTY       = "tty"
	argStdinOnce = "stdin-once"
	argOpen      = "open-timeout"
)

// Args returns the arguments of [ParseArgs] that give o back, without
// [Mode].
func (o Options) Args() []string {
	args := []string{argDir, o.Dir}
	for k, vs := range logs.LoggerQuery(o.Log, o.Rotation) {
		args = append(args, k, vs[0])
	}
	args = append(args, argTTY, strconv.FormatBool(o.TTY), argStdinOnce, strconv.FormatBool(o.StdinOnce))
	if o.OpenTimeout > 0 {
		args = append(args, argOpen, o.OpenTimeout.String())
	}
	return args
}

// ParseArgs parses the helper's arguments, the "key value" pairs of
// [Options.Args] in any order.
func ParseArgs(args []string) (Options, error) {
	var o Options
	if len(args)%2 != 0 {
		return o, fmt.Errorf("arguments %q: want KEY VALUE pairs", args)
	}
	var rest []string
	for i := 0; i < len(args); i += 2 {
		k, v := args[i], args[i+1]
		var err error
		switch k {
		case argDir:
			o.Dir = v
		case argTTY:
			o.TTY, err = strconv.ParseBool(v)
		case argStdinOnce:
			o.StdinOnce, err = strconv.ParseBool(v)
		case argOpen:
			o.OpenTimeout, err = time.ParseDuration(v)
		default:
			rest = append(rest, k, v)
		}
		if err != nil {
			return o, fmt.Errorf("%s %q: %w", k, v, err)
		}
	}
	if o.Dir == "" {
		return o, fmt.Errorf("no %s DIR", argDir)
	}
	var err error
	if o.Log, o.Rotation, err = logs.ParseLoggerArgs(rest); err != nil {
		return o, err
	}
	return o, nil
}
