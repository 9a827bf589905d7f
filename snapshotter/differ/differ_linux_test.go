package differ

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/vmimage"
)

// rawDisk is a raw disk of n sectors with a boot signature.
func rawDisk(n int) []byte {
	b := make([]byte, n*vmimage.SectorSize)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// qcow2Disk is a qcow2 v3 header (all ProbeDisk reads) of a 1 MiB disk,
// padded to 64 KiB; version replaces the version field.
func qcow2Disk(version uint32) []byte {
	b := make([]byte, 64<<10)
	copy(b, "QFI\xfb")
	be := binary.BigEndian
	be.PutUint32(b[4:], version)
	be.PutUint32(b[20:], 16)
	be.PutUint64(b[24:], 1<<20)
	return b
}

// fixture is a content store and a snapshotter root in temporary folders.
type fixture struct {
	content, root string
	d             *Differ
}

func newFixture(t *testing.T, contentRoot string) *fixture {
	t.Helper()
	f := &fixture{content: contentRoot, root: filepath.Join(t.TempDir(), "root")}
	if f.content == "" {
		f.content = filepath.Join(t.TempDir(), "content")
	}
	f.d = New(f.root, f.content)
	return f
}

// blob stores b in the content store as containerd does (mode 0444) and
// returns its descriptor.
func (f *fixture) blob(t *testing.T, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	p := filepath.Join(f.content, "blobs", "sha256", d.Digest.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
	return d
}

// snapshot makes snapshot n's folder and returns its mounts as the overlay
// snapshotter gives them: a bind mount without parents, else an overlay.
func (f *fixture) snapshot(t *testing.T, n string, parents ...string) ([]mount.Mount, string) {
	t.Helper()
	upper := filepath.Join(f.root, "snapshots", n, "fs")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(parents) == 0 {
		return []mount.Mount{{Type: "bind", Source: upper, Options: []string{"rw", "rbind"}}}, upper
	}
	var lowers []string
	for _, p := range parents {
		lowers = append(lowers, filepath.Join(f.root, "snapshots", p, "fs"))
	}
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + filepath.Join(f.root, "snapshots", n, "work"), "upperdir=" + upper, "lowerdir=" + strings.Join(lowers, ":")}}}, upper
}

func TestApplyDisk(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		mediaType string
		disk      []byte
	}{
		{"raw", vmimage.MediaTypeDiskLayerRaw, rawDisk(64)},
		{"qcow2", vmimage.MediaTypeDiskLayerQCOW2, qcow2Disk(3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			desc := f.blob(t, tc.mediaType, tc.disk)
			mounts, upper := f.snapshot(t, "1")
			got, err := f.d.Apply(ctx, desc, mounts)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != desc.Digest || got.Size != desc.Size || got.MediaType != desc.MediaType {
				t.Errorf("applied %+v, want %+v (a disk layer's diff ID is its digest)", got, desc)
			}
			blob, err := os.Stat(filepath.Join(f.content, "blobs", "sha256", desc.Digest.Encoded()))
			if err != nil {
				t.Fatal(err)
			}
			disk, err := os.Stat(filepath.Join(upper, vmimage.DiskPath))
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(blob, disk) {
				t.Errorf("the snapshot's disk is not the content store's blob (a hard link): stored twice")
			}
			left, _ := filepath.Glob(filepath.Join(upper, "feather", ".*"))
			if len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestApplyDiskCopy: content store and snapshots on different file systems
// (a tmpfs and the test's temp dir): the disk is copied, whole and checked.
func TestApplyDiskCopy(t *testing.T) {
	var shm, tmp unix.Statfs_t
	if unix.Statfs("/dev/shm", &shm) != nil || unix.Statfs(os.TempDir(), &tmp) != nil || shm.Fsid == tmp.Fsid {
		t.Skip("needs /dev/shm on another file system than " + os.TempDir())
	}
	content, err := os.MkdirTemp("/dev/shm", "differ-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(content) })
	f := newFixture(t, content)
	disk := rawDisk(128)
	disk[1000] = 7
	desc := f.blob(t, vmimage.MediaTypeDiskLayerRaw, disk)
	mounts, upper := f.snapshot(t, "1")
	if _, err := f.d.Apply(context.Background(), desc, mounts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(upper, vmimage.DiskPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, disk) {
		t.Error("the copied disk differs from the blob")
	}
}

func TestApplyDiskErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// setup stores the layer and returns it with the snapshot's mounts
		// and upper directory.
		setup func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string)
		want  error
		msg   string
	}{
		{"digest does not match", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			desc := f.blob(t, vmimage.MediaTypeDiskLayerRaw, rawDisk(8))
			p := filepath.Join(f.content, "blobs", "sha256", desc.Digest.Encoded())
			bad := rawDisk(8)
			bad[2000] = 1
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, bad, 0o444); err != nil {
				t.Fatal(err)
			}
			m, u := f.snapshot(t, "1")
			return desc, m, u
		}, errdefs.ErrDataLoss, "does not match its digest"},
		{"size does not match", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			desc := f.blob(t, vmimage.MediaTypeDiskLayerRaw, rawDisk(8))
			desc.Size++
			m, u := f.snapshot(t, "1")
			return desc, m, u
		}, errdefs.ErrDataLoss, "its descriptor says"},
		{"corrupt qcow2 header", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			desc := f.blob(t, vmimage.MediaTypeDiskLayerQCOW2, qcow2Disk(9))
			m, u := f.snapshot(t, "1")
			return desc, m, u
		}, errdefs.ErrInvalidArgument, "unknown version 9"},
		{"qcow2 media type, no qcow2 header", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			desc := f.blob(t, vmimage.MediaTypeDiskLayerQCOW2, rawDisk(8))
			m, u := f.snapshot(t, "1")
			return desc, m, u
		}, errdefs.ErrInvalidArgument, "header is raw's"},
		{"two layers carry a disk", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			first := f.blob(t, vmimage.MediaTypeDiskLayerRaw, rawDisk(8))
			m1, _ := f.snapshot(t, "1")
			if _, err := f.d.Apply(ctx, first, m1); err != nil {
				t.Fatal(err)
			}
			desc := f.blob(t, vmimage.MediaTypeDiskLayerRaw, rawDisk(16))
			m, u := f.snapshot(t, "2", "1")
			return desc, m, u
		}, errdefs.ErrInvalidArgument, "a layer below already carries a VM disk"},
		{"blob missing", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			b := rawDisk(8)
			desc := ocispec.Descriptor{MediaType: vmimage.MediaTypeDiskLayerRaw, Digest: digest.FromBytes(b), Size: int64(len(b))}
			m, u := f.snapshot(t, "1")
			return desc, m, u
		}, errdefs.ErrNotFound, "--content-root"},
		{"not a directory snapshot", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			desc := f.blob(t, vmimage.MediaTypeDiskLayerRaw, rawDisk(8))
			_, u := f.snapshot(t, "1")
			return desc, []mount.Mount{{Type: "ext4", Source: "/dev/loop9"}}, u
		}, errdefs.ErrNotImplemented, "--snapshotter feather"},
		{"another snapshotter's snapshot", func(t *testing.T, f *fixture) (ocispec.Descriptor, []mount.Mount, string) {
			desc := f.blob(t, vmimage.MediaTypeDiskLayerRaw, rawDisk(8))
			u := t.TempDir()
			return desc, []mount.Mount{{Type: "bind", Source: u, Options: []string{"rw", "rbind"}}}, u
		}, errdefs.ErrNotImplemented, "only into the feather snapshotter's snapshots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			desc, mounts, upper := tc.setup(t, f)
			before, _ := os.ReadDir(upper)
			_, err := f.d.Apply(ctx, desc, mounts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Apply: %v, want %v saying %q", err, tc.want, tc.msg)
			}
			after, _ := os.ReadDir(upper)
			if len(after) != len(before) {
				t.Errorf("the snapshot holds %v after the failed apply, %v before", after, before)
			}
		})
	}
}

// TestApplyTar: a tar layer is applied into the feather snapshotter's own
// snapshots (as containerd's walking differ would) and left to the next
// differ for another snapshotter's.
func TestApplyTar(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "hello", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("hi"))
	tw.Close()
	desc := f.blob(t, ocispec.MediaTypeImageLayer, buf.Bytes())

	other := t.TempDir()
	_, err := f.d.Apply(ctx, desc, []mount.Mount{{Type: "overlay", Options: []string{"upperdir=" + other, "lowerdir=" + t.TempDir()}}})
	if !errdefs.IsNotImplemented(err) {
		t.Fatalf("tar layer for another snapshotter: %v, want ErrNotImplemented", err)
	}
	if _, err := f.d.Apply(ctx, desc, []mount.Mount{{Type: "overlay", Options: []string{"upperdir=" + t.TempDir(), "lowerdir=" + t.TempDir()}}}); !errdefs.IsNotImplemented(err) {
		t.Fatalf("tar layer for another snapshotter: %v, want ErrNotImplemented", err)
	}

	f.snapshot(t, "1")
	mounts, upper := f.snapshot(t, "2", "1")
	got, err := f.d.Apply(ctx, desc, mounts)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != desc.Digest {
		t.Errorf("diff %s, want %s", got.Digest, desc.Digest)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "hello")); err != nil || string(b) != "hi" {
		t.Errorf("hello: %q, %v", b, err)
	}
}

// TestApplyDiskFull: the snapshot's file system fills up while the disk is
// copied into it (the content store is elsewhere): a clear error, no
// partial disk left, and the file system's space back.
func TestApplyDiskFull(t *testing.T) {
	prereq.Root(t)
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a 1 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	f := &fixture{content: filepath.Join(t.TempDir(), "content"), root: small}
	f.d = New(f.root, f.content)
	desc := f.blob(t, vmimage.MediaTypeDiskLayerRaw, rawDisk(4096)) // 2 MiB
	mounts, upper := f.snapshot(t, "1")
	_, err := f.d.Apply(context.Background(), desc, mounts)
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "copy the blob into the snapshot") {
		t.Fatalf("Apply: %v, want ENOSPC copying", err)
	}
	if _, err := os.Stat(filepath.Join(upper, "feather")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("feather/ left in the snapshot: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(small, &st); err != nil {
		t.Fatal(err)
	}
	if used := (st.Blocks - st.Bfree) * uint64(st.Bsize); used > 64<<10 {
		t.Errorf("%d bytes still used on the full file system", used)
	}
}
