//go:build linux

// Command mkguest assembles the images of Feather's OSv-protocol test guest
// (see shim-osv/testguest/README.md). `make guest` runs it through
// shim-osv/testguest/build.sh, which fetches its inputs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/feather-edge/feather/shim-osv/testguest/build"
)

func main() {
	var o build.Options
	flag.StringVar(&o.KernelDir, "kernel-dir", "", "unpacked linux-image-*-cloud-amd64 package (dpkg-deb -x)")
	flag.StringVar(&o.Init, "init", "", "static guest-init binary")
	flag.StringVar(&o.OutDir, "out", "_output/guest", "directory for the image tarballs")
	flag.StringVar(&o.MBR, "mbr", build.DefaultMBR, "MBR boot code")
	flag.Parse()
	if o.KernelDir == "" || o.Init == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkguest -kernel-dir DIR -init GUEST-INIT [-out DIR] [-mbr FILE]")
		os.Exit(2)
	}
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := build.Build(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "mkguest: %v\n", err)
		os.Exit(1)
	}
}
