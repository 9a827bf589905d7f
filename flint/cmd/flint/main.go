// Command flint packs OSv unikernel images as OCI images, inspects them,
// and moves them between files, registries and containerd. See
// flint/README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/feather-edge/feather/flint/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
