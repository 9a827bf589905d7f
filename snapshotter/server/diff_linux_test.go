package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/diff"
	diffproxy "github.com/containerd/containerd/v2/core/diff/proxy"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/snapshotter/differ"
	"github.com/feather-edge/feather/snapshotter/vmsnap"
	"github.com/feather-edge/feather/vmimage"
)

// TestDiffProxy unpacks a disk layer as containerd does with the feather
// snapshotter and its differ, both through the gRPC API on one socket:
// prepare an extract snapshot, apply the layer, commit; then a container's
// snapshot on it gets its instance disk, backed by the linked disk. A
// damaged blob fails the apply with DataLoss, through gRPC, and the
// snapshot stays empty.
func TestDiffProxy(t *testing.T) {
	prereq.Root(t)
	ctx := context.Background()
	dir := t.TempDir()
	root, contentRoot := filepath.Join(dir, "root"), filepath.Join(dir, "content")
	disk := make([]byte, 1<<20)
	disk[510], disk[511] = 0x55, 0xaa
	desc := ocispec.Descriptor{MediaType: vmimage.MediaTypeDiskLayerRaw, Digest: digest.FromBytes(disk), Size: int64(len(disk))}
	blob := filepath.Join(contentRoot, "blobs", "sha256", desc.Digest.Encoded())
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, disk, 0o444); err != nil {
		t.Fatal(err)
	}

	vs, err := vmsnap.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	addr := filepath.Join(dir, "snapshotter.sock")
	l, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- Serve(sctx, l, vs, differ.New(root, contentRoot)) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "feather")
	a := diffproxy.NewDiffApplier(diffapi.NewDiffClient(conn)).(diff.Applier)

	// A damaged blob: refused, nothing in the snapshot.
	bad := append([]byte(nil), disk...)
	bad[4096] = 1
	badDesc := ocispec.Descriptor{MediaType: vmimage.MediaTypeDiskLayerRaw, Digest: digest.FromBytes(disk[:len(disk)-512]), Size: int64(len(bad))} // stored under a digest it does not have
	badBlob := filepath.Join(contentRoot, "blobs", "sha256", badDesc.Digest.Encoded())
	if err := os.WriteFile(badBlob, bad, 0o444); err != nil {
		t.Fatal(err)
	}
	key := snapshots.UnpackKeyPrefix + "-bad"
	mounts, err := sn.Prepare(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, badDesc, mounts); !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("Apply of a damaged blob: %v, want DataLoss", err)
	}
	if left, _ := os.ReadDir(mounts[0].Source); len(left) != 0 {
		t.Errorf("the snapshot holds %v after the failed apply", left)
	}
	if err := sn.Remove(ctx, key); err != nil {
		t.Fatal(err)
	}

	key = snapshots.UnpackKeyPrefix + "-1"
	mounts, err = sn.Prepare(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	applied, err := a.Apply(ctx, desc, mounts)
	if err != nil {
		t.Fatal(err)
	}
	if applied.Digest != desc.Digest {
		t.Errorf("applied %s, want %s", applied.Digest, desc.Digest)
	}
	if err := sn.Commit(ctx, "layer", key); err != nil {
		t.Fatal(err)
	}
	mounts, err = sn.Prepare(ctx, "container", "layer")
	if err != nil {
		t.Fatal(err)
	}
	var upper, lower string
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		} else if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lower = v
		}
	}
	b, _ := os.Stat(blob)
	d, err := os.Stat(filepath.Join(lower, vmimage.DiskPath))
	if err != nil || !os.SameFile(b, d) {
		t.Errorf("the layer's disk is not the blob, linked: %v", err)
	}
	if _, err := os.Stat(filepath.Join(upper, vmimage.InstanceDiskPath)); err != nil {
		t.Errorf("no instance disk: %v", err)
	}

	// A tar layer for another snapshotter's mounts: left to the next differ.
	tarDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: desc.Digest, Size: desc.Size}
	other := t.TempDir()
	_, err = a.Apply(ctx, tarDesc, []mount.Mount{{Type: "bind", Source: other, Options: []string{"rw", "rbind"}}})
	if !errdefs.IsNotImplemented(err) {
		t.Errorf("tar layer elsewhere: %v, want NotImplemented", err)
	}
}
