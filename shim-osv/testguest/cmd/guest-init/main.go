//go:build linux

// Command guest-init is the init and the programs of Feather's OSv-protocol
// test guest (see shim-osv/testguest/README.md). Build it static:
// CGO_ENABLED=0.
package main

import (
	"os"

	"github.com/feather-edge/feather/shim-osv/testguest/guestinit"
)

func main() {
	os.Exit(guestinit.Main(os.Args, os.Stdout))
}
