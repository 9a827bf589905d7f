// Command feather-cri-log is the Feather agent's containerd logging binary
// (binary:// log URI): containerd's shim runs `feather-cri-log cri-log PATH
// [max-size BYTES max-files N]` (the pairs in any order) with a container's
// stdout on fd 3, its stderr on fd 4 and fd 5 to close once ready, and it
// writes both as the CRI log file at PATH, rotating it at BYTES and keeping
// at most N files (kubelet's containerLogMaxSize and -Files). One runs per
// container, so it is a program of its own, apart from the agent: it imports
// only kubelet/logs (and kubelet/stdio), and each copy maps a 2.4 MB binary
// rather than the agent's.
//
// `feather-cri-log stdio dir DIR cri-log PATH …` is the helper of a container
// that takes input (stdin: true), which the agent starts: it owns the
// container's stdio fifos in DIR, writes its output to the CRI log at PATH as
// above and its attach sessions' input to its stdin (see kubelet/stdio).
package main

import (
	"fmt"
	"os"

	"github.com/feather-edge/feather/kubelet/logs"
	"github.com/feather-edge/feather/kubelet/stdio"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == stdio.Mode {
		os.Exit(stdio.Main(os.Args[2:]))
	}
	path, rot, err := logs.ParseLoggerArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "feather-cri-log:", err)
		fmt.Fprintln(os.Stderr, "usage: feather-cri-log cri-log PATH [max-size BYTES max-files N] (run by containerd's shim, with the container's stdout on fd 3 and stderr on fd 4)")
		os.Exit(2)
	}
	if err := logs.BinaryLogger(path, rot); err != nil {
		fmt.Fprintln(os.Stderr, "feather-cri-log:", err)
		os.Exit(1)
	}
}
