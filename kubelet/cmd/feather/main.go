// Command feather is the Feather agent: it makes this machine a node of a
// Kubernetes cluster that runs containers and OSv unikernels through
// containerd. `feather cri-log PATH` is its containerd logging binary.
package main

import (
	"os"

	"github.com/feather-edge/feather/kubelet/agent"
)

func main() {
	os.Exit(agent.Main(os.Args[1:]))
}
