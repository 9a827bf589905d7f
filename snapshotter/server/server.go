// Package server serves a containerd snapshotter, and its differ, on a unix
// socket with containerd's snapshots and diff gRPC APIs, the way containerd
// reaches a proxy plugin (`[proxy_plugins.NAME] type = "snapshot"`, and
// `type = "diff"` at the same address).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/diffservice"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/log"
	"google.golang.org/grpc"

	"github.com/feather-edge/feather/snapshotter/differ"
	"github.com/feather-edge/feather/snapshotter/vmsnap"
)

// Listen removes a stale socket at address (a file left by a process that
// died), makes its directory, and listens there, the socket readable and
// writable by its owner only.
func Listen(address string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(address), 0o711); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", address, err)
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", address, err)
	}
	if err := os.Chmod(address, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", address, err)
	}
	return l, nil
}

// Serve answers snapshots API calls on l with sn, and diff API calls with a
// (Apply only; Diff is not implemented) unless a is nil, until ctx ends,
// then stops gracefully (calls in progress finish) and closes l. It returns
// nil when ctx ended it, else the error that stopped it. It does not close
// sn.
func Serve(ctx context.Context, l net.Listener, sn snapshots.Snapshotter, a diff.Applier) error {
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	if a != nil {
		diffapi.RegisterDiffServer(srv, diffservice.FromApplierAndComparer(a, nil))
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-done:
		}
	}()
	log.G(ctx).WithField("address", l.Addr().String()).Info("serving the snapshots API")
	err := srv.Serve(l)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("serve snapshots API: %w", err)
}

// DefaultAddress is the socket the snapshotter serves on unless told
// otherwise.
const DefaultAddress = "/run/feather-snapshotter/snapshotter.sock"

// Run opens the snapshotter at root and serves it, and its differ reading
// blobs from containerd's content store at contentRoot, on the unix socket
// at address until ctx ends; then it closes both. It returns nil when ctx
// ended it.
func Run(ctx context.Context, root, address, contentRoot string) error {
	sn, err := vmsnap.New(root)
	if err != nil {
		return err
	}
	defer sn.Close()
	l, err := Listen(address)
	if err != nil {
		return err
	}
	defer os.Remove(address)
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("root", root))
	return Serve(ctx, l, sn, differ.New(root, contentRoot))
}
