package vmsnap

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"

	"github.com/feather-edge/feather/internal/prereq"
)

// TestSuite runs containerd's snapshotter testsuite against the
// snapshotter in-process: for layers without a VM disk it must behave as
// containerd's overlayfs snapshotter (named so, the suite expects what
// overlayfs does).
func TestSuite(t *testing.T) {
	prereq.Root(t)
	testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sn, err := New(root)
		if err != nil {
			return nil, nil, err
		}
		return sn, sn.Close, nil
	})
}
