// Command feather-cri-log is the Feather agent's containerd logging binary
// (binary:// log URI): containerd's shim runs `feather-cri-log cri-log PATH
// [max-size BYTES max-files N]` (the pairs in any order) with a container's
// stdout on fd 3, its stderr on fd 4 and fd 5 to close once ready, and it
// writes both as the CRI log file at PATH, rotating it at BYTES and keeping
// at most N files (kubelet's containerLogMaxSize and -Files). One runs per
// container, so it is a program of its own, apart from the agent: it imports
// only kubelet/logs, and each copy maps a 2 MB binary rather than the agent's.
package main

import (
	"fmt"
	"os"

	"github.com/feather-edge/feather/kubelet/logs"
)

func main() {
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
