package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/feather-edge/feather/flint/containerd"
	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/vmimage"
)

// diskLayerRef is the test guest packed with its disk as a disk layer
// (flint pack --disk-layer=qcow2).
const diskLayerRef = "docker.io/feather/testguest-disklayer:test"

// diskLayerOf returns the descriptor of p's disk layer.
func diskLayerOf(ctx context.Context, t *testing.T, p *pack.Packed) ocispec.Descriptor {
	t.Helper()
	c, err := image.Read(ctx, p.Image)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range c.Manifest.Layers {
		if _, ok := vmimage.DiskLayerFormat(l.MediaType); ok {
			return l
		}
	}
	t.Fatalf("%s has no disk layer", p.Name)
	return ocispec.Descriptor{}
}

// craftImage writes into dir an image named ref made from p's config and
// layers, its disk layer replaced by disks (each a qcow2 disk layer of those
// bytes: several, or a corrupt one, as flint never packs them), and returns
// the tarball's path.
func craftImage(ctx context.Context, t *testing.T, dir, ref string, p *pack.Packed, disks ...[]byte) string {
	t.Helper()
	c, err := image.Read(ctx, p.Image)
	if err != nil {
		t.Fatal(err)
	}
	var store image.Store
	cfg := c.Config
	cfg.RootFS.DiffIDs = nil
	var layers []ocispec.Descriptor
	for i, l := range c.Manifest.Layers {
		if _, ok := vmimage.DiskLayerFormat(l.MediaType); ok {
			continue
		}
		b, err := content.ReadBlob(ctx, p.Image.Blobs, l)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, store.AddBytes(l.MediaType, b))
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, c.Config.RootFS.DiffIDs[i])
	}
	for _, d := range disks {
		l := store.AddBytes(vmimage.MediaTypeDiskLayerQCOW2, d)
		layers = append(layers, l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest)
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: store.AddBytes(ocispec.MediaTypeImageConfig, cb), Layers: layers}
	m.SchemaVersion = 2
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	md := store.AddBytes(ocispec.MediaTypeImageManifest, mb)
	plat := platforms.DefaultSpec()
	md.Platform = &plat
	tarball := filepath.Join(dir, "crafted.oci.tar")
	if err := image.WriteTarFile(ctx, tarball, image.Image{Name: ref, Manifest: md, Blobs: &store}); err != nil {
		t.Fatal(err)
	}
	return tarball
}

// TestSnapshotterDiskLayer: an image whose disk is a disk layer
// (--disk-layer=qcow2) unpacks on the feather snapshotter, through ctr's
// transfer service and through the client's unpack (the agent's), with the
// disk a hard link to the content store's blob — stored once — and boots.
// Bad disk layers (a blob that does not match its digest, a corrupt qcow2
// header, two disks) fail the unpack with a clear error, leave no snapshot
// in their namespace and leave the good image's snapshots whole.
func TestSnapshotterDiskLayer(t *testing.T) {
	osvPrerequisites(t)
	env := harness.New(t)
	sn := env.StartSnapshotter()
	ctrd := env.StartContainerd(harness.ContainerdOptions{Snapshotter: sn})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	tarball, p := writeGuestImage(ctx, t, dir, diskLayerRef, 64, pack.DiskLayerQCOW2)
	diskLayer := diskLayerOf(ctx, t, p)
	blob := filepath.Join(sn.ContentRoot, "blobs", "sha256", diskLayer.Digest.Encoded())

	// linked counts the snapshots whose disk is the blob itself.
	linked := func(t *testing.T) int {
		t.Helper()
		b, err := os.Stat(blob)
		if err != nil {
			t.Fatalf("the disk layer's blob: %v", err)
		}
		disks, _ := filepath.Glob(filepath.Join(sn.Root, "snapshots", "*", "fs", vmimage.DiskPath))
		n := 0
		for _, d := range disks {
			if fi, err := os.Stat(d); err == nil && os.SameFile(b, fi) {
				n++
			}
		}
		return n
	}

	t.Run("ctr", func(t *testing.T) {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", "--snapshotter", harness.SnapshotterName, tarball); err != nil {
			t.Fatal(err)
		}
		if n := linked(t); n != 1 {
			t.Errorf("%d snapshots hold the disk as a link to its blob, want 1", n)
		}
		out, code := ctrRun(ctx, t, ctrd, "--snapshotter", harness.SnapshotterName, diskLayerRef, "dl-run", "/hello")
		if code != 0 || !strings.Contains(out, "hello from feather guest\n") {
			t.Fatalf("ctr run /hello: exit %d, output:\n%s", code, out)
		}
	})

	t.Run("client", func(t *testing.T) {
		const cns = "dl-client"
		if _, err := ctrd.Ctr(ctx, "-n", cns, "image", "import", "--no-unpack", tarball); err != nil {
			t.Fatal(err)
		}
		before := linked(t)
		nsCtx := namespaces.WithNamespace(ctx, cns)
		img, err := ctrd.Client().GetImage(nsCtx, diskLayerRef)
		if err != nil {
			t.Fatal(err)
		}
		if err := img.Unpack(nsCtx, harness.SnapshotterName); err != nil {
			t.Fatal(err)
		}
		if n := linked(t); n != before+1 {
			t.Errorf("%d snapshots hold the disk as a link to its blob, want %d", n, before+1)
		}
	})

	t.Run("bad", func(t *testing.T) {
		const bns = "dl-bad"
		nsCtx := namespaces.WithNamespace(ctx, bns)
		qcow2 := func(version byte, size int) []byte {
			b := make([]byte, size)
			copy(b, "QFI\xfb\x00\x00\x00")
			b[7] = version
			b[23] = 16 // cluster bits
			b[26] = 1  // virtual size 1 TiB
			return b
		}
		damaged, dp := writeGuestImage(ctx, t, t.TempDir(), "docker.io/feather/dl-damaged:test", 32, pack.DiskLayerQCOW2)
		for _, tc := range []struct {
			name, ref, tarball string
			damage             func(t *testing.T)
			want               string
		}{
			{"digest does not match", "docker.io/feather/dl-damaged:test", damaged, func(t *testing.T) {
				l := diskLayerOf(ctx, t, dp)
				p := filepath.Join(sn.ContentRoot, "blobs", "sha256", l.Digest.Encoded())
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.WriteAt([]byte{0xff}, l.Size-1)
				if err := errors.Join(err, f.Close()); err != nil {
					t.Fatal(err)
				}
			}, "does not match its digest"},
			{"corrupt qcow2 header", "docker.io/feather/dl-corrupt:test",
				craftImage(ctx, t, t.TempDir(), "docker.io/feather/dl-corrupt:test", p, qcow2(9, 1<<20)), nil, "unknown version 9"},
			{"two disks", "docker.io/feather/dl-two:test",
				craftImage(ctx, t, t.TempDir(), "docker.io/feather/dl-two:test", p, qcow2(3, 1<<20), qcow2(3, 2<<20)), nil, "already carries a VM disk"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := ctrd.Ctr(ctx, "-n", bns, "image", "import", "--no-unpack", tc.tarball); err != nil {
					t.Fatal(err)
				}
				if tc.damage != nil {
					tc.damage(t)
				}
				img, err := ctrd.Client().GetImage(nsCtx, tc.ref)
				if err != nil {
					t.Fatal(err)
				}
				err = img.Unpack(nsCtx, harness.SnapshotterName)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Unpack: %v, want an error saying %q", err, tc.want)
				}
				t.Logf("unpack refused: %v", err)
				// Layers below the bad one may be committed, each whole; the
				// snapshot the bad one was applied into is gone.
				if err := ctrd.Client().SnapshotService(harness.SnapshotterName).Walk(nsCtx, func(_ context.Context, i snapshots.Info) error {
					if i.Kind != snapshots.KindCommitted {
						t.Errorf("%s snapshot %s left behind", i.Kind, i.Name)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			})
		}
		// The good image is whole: still unpacked, its disk still linked.
		img, err := ctrd.Client().GetImage(namespaces.WithNamespace(ctx, ns), diskLayerRef)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := img.IsUnpacked(namespaces.WithNamespace(ctx, ns), harness.SnapshotterName); !ok || err != nil {
			t.Errorf("the good image is no longer unpacked: %v", err)
		}
		if n := linked(t); n < 1 {
			t.Error("the good image's disk is gone")
		}
	})
}

// TestDiskLayerPlainContainerd: containerd without the feather snapshotter
// refuses an image whose disk is a disk layer, naming its media type (ctr
// image import), and flint's import (as the agent does) says to use the
// feather snapshotter.
func TestDiskLayerPlainContainerd(t *testing.T) {
	osvPrerequisites(t)
	env := harness.New(t)
	ctrd := env.StartContainerd(harness.ContainerdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tarball, p := writeGuestImage(ctx, t, t.TempDir(), diskLayerRef, 16, pack.DiskLayerQCOW2)
	_, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", tarball)
	if err == nil || !strings.Contains(err.Error(), vmimage.MediaTypeDiskLayerQCOW2) {
		t.Errorf("ctr image import: %v, want an error naming %s", err, vmimage.MediaTypeDiskLayerQCOW2)
	}
	t.Logf("ctr image import: %v", err)
	err = containerd.Import(ctx, ctrd.Address, "dl-plain", "", p.Image)
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "--snapshotter feather") || !strings.Contains(err.Error(), vmimage.MediaTypeDiskLayerQCOW2) {
		t.Errorf("flint import: %v, want ErrNotImplemented naming the media type and the feather snapshotter", err)
	}
	t.Logf("flint import: %v", err)
}

// TestSnapshotterDiskFull: the snapshotter's root is a 16 MiB tmpfs (so a
// disk layer is copied, not linked, from containerd's content store) and an
// image's 32 MiB disk fills it up during the unpack: the import fails
// saying so, no active snapshot is left, the tmpfs's space is back, and an
// image unpacked before is untouched.
func TestSnapshotterDiskFull(t *testing.T) {
	prereq.Root(t)
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mount a 16 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	env := harness.New(t)
	sn := env.StartSnapshotterAt(filepath.Join(small, "root"))
	ctrd := env.StartContainerd(harness.ContainerdOptions{Snapshotter: sn})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nsCtx := namespaces.WithNamespace(ctx, ns)

	good := writeDiskImage(ctx, t, t.TempDir(), diskLayerRef, 1<<20)
	if _, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", "--snapshotter", harness.SnapshotterName, good); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	usedNow := func() int64 {
		if err := unix.Statfs(small, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Blocks-st.Bfree) * st.Bsize
	}
	before := usedNow()

	big := writeDiskImage(ctx, t, t.TempDir(), "docker.io/feather/dl-big:test", 32<<20)
	_, err := ctrd.Ctr(ctx, "-n", ns, "image", "import", "--snapshotter", harness.SnapshotterName, big)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("import of a disk bigger than the snapshotter's file system: %v, want no space left on device", err)
	}
	t.Logf("import refused: %v", err)
	if err := ctrd.Client().SnapshotService(harness.SnapshotterName).Walk(nsCtx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind != snapshots.KindCommitted {
			t.Errorf("%s snapshot %s left behind", i.Kind, i.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if after := usedNow(); after > before+1<<20 {
		t.Errorf("the tmpfs holds %d KiB more than before the failed unpack", (after-before)>>10)
	}
	img, err := ctrd.Client().GetImage(nsCtx, diskLayerRef)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := img.IsUnpacked(nsCtx, harness.SnapshotterName); !ok || err != nil {
		t.Errorf("the image unpacked before is no longer: %v", err)
	}
}

// writeDiskImage writes into dir an image named ref of one raw disk layer
// (no kernel: disk boot) of size bytes, all of them written, and returns
// the tarball's path.
func writeDiskImage(ctx context.Context, t *testing.T, dir, ref string, size int) string {
	t.Helper()
	disk := filepath.Join(dir, "disk.raw")
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i>>12 + 1)
	}
	b[510], b[511] = 0x55, 0xaa
	if err := os.WriteFile(disk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := pack.Pack(ctx, pack.Options{Disk: disk, Cmd: "/hello", DiskLayer: pack.DiskLayerRaw, TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Name = ref
	tarball := filepath.Join(dir, "disk.oci.tar")
	if err := image.WriteTarFile(ctx, tarball, p.Image); err != nil {
		t.Fatal(err)
	}
	return tarball
}
