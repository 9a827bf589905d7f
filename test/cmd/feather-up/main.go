// Command feather-up is `make up` and `make down`: `feather-up up` starts a
// local Feather cluster that runs a container and a unikernel Deployment and
// leaves it running; `feather-up down` stops it and removes what it made.
package main

import (
	"os"

	"github.com/feather-edge/feather/test/up"
)

func main() {
	os.Exit(up.Main(os.Args[1:]))
}
