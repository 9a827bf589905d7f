// Command feather-conformance is `make conformance`: it runs the upstream
// Kubernetes e2e suite's [Conformance] specs of [sig-node] and the volume
// specs of [sig-storage] against a Feather node and writes the results table
// in kubelet/README.md.
package main

import (
	"os"

	"github.com/feather-edge/feather/test/conformance"
)

func main() {
	os.Exit(conformance.Main(os.Args[1:]))
}
