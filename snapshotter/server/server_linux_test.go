package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/snapshotter/vmsnap"
)

// TestSuiteProxy runs containerd's snapshotter testsuite through the gRPC
// API, as containerd reaches the snapshotter: a server on a unix socket,
// containerd's proxy snapshotter as the client.
func TestSuiteProxy(t *testing.T) {
	prereq.Root(t)
	testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sn, err := vmsnap.New(root)
		if err != nil {
			return nil, nil, err
		}
		client, stop, err := serve(ctx, sn)
		if err != nil {
			sn.Close()
			return nil, nil, err
		}
		return client, func() error { return errors.Join(stop(), sn.Close()) }, nil
	})
}

// serve serves sn on a fresh unix socket and returns a proxy client for it,
// and a function that closes the client, stops the server and removes the
// socket, returning the server's error.
func serve(ctx context.Context, sn snapshots.Snapshotter) (snapshots.Snapshotter, func() error, error) {
	dir, err := os.MkdirTemp("", "fsnap-")
	if err != nil {
		return nil, nil, err
	}
	addr := filepath.Join(dir, "snapshotter.sock")
	l, err := Listen(addr)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- Serve(sctx, l, sn, nil) }()
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-served
		os.RemoveAll(dir)
		return nil, nil, err
	}
	stop := func() error {
		errs := []error{conn.Close()}
		cancel()
		errs = append(errs, <-served, os.RemoveAll(dir))
		return errors.Join(errs...)
	}
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "feather"), stop, nil
}
