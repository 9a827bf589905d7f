// Command feather-snapshotter is Feather's containerd proxy snapshotter:
// containerd's overlay snapshotter, plus each VM container's instance disk
// kept in its snapshot (see snapshotter/README.md). containerd reaches it
// through
//
//	[proxy_plugins.feather]
//	  type = "snapshot"
//	  address = "/run/feather-snapshotter/snapshotter.sock"
//	[proxy_plugins.feather-diff]
//	  type = "diff"
//	  address = "/run/feather-snapshotter/snapshotter.sock"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/log"

	"github.com/feather-edge/feather/snapshotter/differ"
	"github.com/feather-edge/feather/snapshotter/server"
	"github.com/feather-edge/feather/snapshotter/vmsnap"
)

func main() {
	root := flag.String("root", vmsnap.DefaultRoot, "folder of the snapshotter's state (bolt metadata, snapshots); on disk, not a tmpfs")
	address := flag.String("address", server.DefaultAddress, "unix socket to serve containerd's snapshots API on")
	contentRoot := flag.String("content-root", differ.DefaultContentRoot, "containerd's content store, whose blobs the differ links into snapshots (best on the same file system as --root)")
	level := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()
	if err := log.SetLevel(*level); err != nil {
		fmt.Fprintln(os.Stderr, "feather-snapshotter:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, *root, *address, *contentRoot); err != nil {
		log.G(ctx).WithError(err).Error("feather-snapshotter")
		os.Exit(1)
	}
}
