// Package differ is the feather snapshotter's containerd diff applier: it
// unpacks a disk layer (vmimage.MediaTypeDiskLayerRaw, …QCOW2: the boot
// disk's bytes, not a tar) by linking the layer's blob from containerd's
// content store into the snapshot at vmimage.DiskPath, so that the disk is
// stored once. Where the snapshot is on another file system than the
// content store it reflinks the blob, else copies it (and says so in its
// log). Either way it checks the disk against its digest and its header
// before the disk appears in the snapshot.
//
// It applies layers only to the feather snapshotter's own snapshots (those
// under its root): tar layers as containerd's walking differ does, so that
// containerd's transfer service can name it as the one differ of that
// snapshotter. Any layer for another snapshotter it refuses with
// ErrNotImplemented, so that containerd's diff service, which tries its
// differs in order, goes on to the next one (whose error, for a disk layer,
// names the media type it has no processor for).
package differ

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/diff/apply"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/feather-edge/feather/vmimage"
)

// DefaultContentRoot is containerd's content store on a node with
// containerd's default root.
const DefaultContentRoot = "/var/lib/containerd/io.containerd.content.v1.content"

// Differ applies layers to the feather snapshotter's snapshots. It is safe
// for concurrent use.
type Differ struct {
	snapshots   string
	contentRoot string
	tar         diff.Applier
}

var _ diff.Applier = (*Differ)(nil)

// New returns the differ of the snapshotter whose state is under
// snapshotterRoot, reading blobs from the content store (containerd's local
// one, `io.containerd.content.v1.content`) at contentRoot. Neither is
// opened until a layer is applied.
func New(snapshotterRoot, contentRoot string) *Differ {
	blobs := blobStore{root: contentRoot}
	return &Differ{
		snapshots:   filepath.Clean(snapshotterRoot) + string(filepath.Separator),
		contentRoot: contentRoot,
		tar:         apply.NewFileSystemApplier(blobs),
	}
}

// How says how a disk layer's blob came into its snapshot.
const (
	HowLink    = "hard link"
	HowReflink = "reflink"
	HowCopy    = "copy"
)

// Apply applies the layer desc to the snapshot whose mounts are given: a
// disk layer into its upper directory, a tar layer as containerd does. It
// returns the applied diff: for a disk layer desc itself (its diff ID is
// its digest). On error the snapshot holds nothing of the layer.
//
// A disk layer whose blob does not match its digest or size is an
// ErrDataLoss error; one whose header is not the disk format its media
// type names (a corrupt qcow2 header), or whose snapshot's parents already
// carry a disk, ErrInvalidArgument; any layer on another snapshotter's
// mounts ErrNotImplemented.
func (d *Differ) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispec.Descriptor, error) {
	format, ok := vmimage.DiskLayerFormat(desc.MediaType)
	if !ok {
		if !d.ours(mounts) {
			return ocispec.Descriptor{}, fmt.Errorf("layer %s of media type %s is not for the feather snapshotter: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
		}
		return d.tar.Apply(ctx, desc, mounts, opts...)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("layer", desc.Digest).WithField("media", desc.MediaType))
	upper, lowers, err := dirs(mounts)
	if err == nil && !strings.HasPrefix(upper, d.snapshots) {
		err = fmt.Errorf("a disk layer is unpacked only into the feather snapshotter's snapshots, not %s: unpack the image with --snapshotter feather: %w", upper, errdefs.ErrNotImplemented)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("disk layer %s: %w", desc.Digest, err)
	}
	start := time.Now()
	how, err := d.applyDisk(ctx, desc, format, upper, lowers)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("disk layer %s: %w", desc.Digest, err)
	}
	log.G(ctx).WithField("how", how).WithField("took", time.Since(start)).Debug("disk layer applied")
	return ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, nil
}

// ours reports whether mounts are of a snapshot under the snapshotter's
// root.
func (d *Differ) ours(mounts []mount.Mount) bool {
	upper, _, err := dirs(mounts)
	return err == nil && strings.HasPrefix(upper, d.snapshots)
}

// dirs returns the directory a layer is applied into (an overlay mount's
// upperdir, a read-write bind mount's source) and the layers below it (the
// overlay's lowerdirs, top first).
func dirs(mounts []mount.Mount) (upper string, lowers []string, err error) {
	if len(mounts) == 1 {
		m := mounts[0]
		switch m.Type {
		case "bind", "rbind":
			for _, o := range m.Options {
				if o == "ro" {
					return "", nil, fmt.Errorf("the snapshot is read-only: %w", errdefs.ErrInvalidArgument)
				}
			}
			return m.Source, nil, nil
		case "overlay":
			for _, o := range m.Options {
				if v, ok := strings.CutPrefix(o, "upperdir="); ok {
					upper = v
				} else if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
					lowers = strings.Split(v, ":")
				}
			}
			if upper != "" {
				return upper, lowers, nil
			}
		}
	}
	kinds := make([]string, len(mounts))
	for i, m := range mounts {
		kinds[i] = m.Type
	}
	return "", nil, fmt.Errorf("a disk layer is unpacked only into a snapshot of the feather snapshotter (a directory), not into mounts %v: "+
		"unpack the image with --snapshotter feather: %w", kinds, errdefs.ErrNotImplemented)
}

// applyDisk puts the blob of desc at upper/vmimage.DiskPath, under a
// temporary name until it is checked, and says how.
func (d *Differ) applyDisk(ctx context.Context, desc ocispec.Descriptor, format, upper string, lowers []string) (how string, retErr error) {
	for _, l := range lowers {
		if fi, err := os.Lstat(filepath.Join(l, vmimage.DiskPath)); err == nil && fi.Mode().IsRegular() {
			return "", fmt.Errorf("a layer below already carries a VM disk at /%s: an image holds one; pack it again with flint pack: %w", vmimage.DiskPath, errdefs.ErrInvalidArgument)
		}
	}
	if err := desc.Digest.Validate(); err != nil {
		return "", fmt.Errorf("digest: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	src := d.blobPath(desc.Digest)
	fi, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("blob not in the content store at %s (is feather-snapshotter's --content-root containerd's?): %w", d.contentRoot, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	if fi.Size() != desc.Size {
		return "", fmt.Errorf("blob is %d bytes, its descriptor says %d: %w", fi.Size(), desc.Size, errdefs.ErrDataLoss)
	}
	dir := filepath.Join(upper, filepath.Dir(vmimage.DiskPath))
	made := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", err
		}
		made = true
	}
	tmp := filepath.Join(dir, ".disk.partial")
	defer func() {
		if retErr != nil {
			os.Remove(tmp)
			if made {
				os.Remove(dir)
			}
		}
	}()
	if how, err = place(ctx, src, tmp); err != nil {
		return "", err
	}
	if err := check(tmp, desc, format); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, filepath.Join(upper, vmimage.DiskPath)); err != nil {
		return "", err
	}
	return how, nil
}

// place makes dst a hard link to src, else (on another file system) a
// reflink of it, else a copy, and says which.
func place(ctx context.Context, src, dst string) (string, error) {
	os.Remove(dst) // left by a crash
	err := os.Link(src, dst)
	if err == nil {
		return HowLink, nil
	}
	if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EPERM) {
		return "", fmt.Errorf("link the blob into the snapshot: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return "", err
	}
	defer out.Close()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		return HowReflink, out.Close()
	}
	log.G(ctx).WithField("from", src).WithField("to", dst).
		Warn("content store and snapshots are on different file systems without reflinks: copying the disk layer (it is stored twice); put both on one file system to link it")
	if _, err := io.Copy(out, in); err != nil {
		return "", fmt.Errorf("copy the blob into the snapshot: %w", err)
	}
	if err := out.Sync(); err != nil {
		return "", fmt.Errorf("copy the blob into the snapshot: %w", err)
	}
	return HowCopy, out.Close()
}

// check reads the disk at path: its digest must be desc's, and its header
// a disk of format.
func check(path string, desc ocispec.Descriptor, format string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if desc.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest algorithm %s: want sha256: %w", desc.Digest.Algorithm(), errdefs.ErrInvalidArgument)
	}
	h := sha256.New()
	head := make([]byte, vmimage.HeadSize)
	n, err := io.ReadFull(io.TeeReader(f, h), head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	size, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	size += int64(n)
	if got := digest.NewDigest(digest.SHA256, h); got != desc.Digest || size != desc.Size {
		return fmt.Errorf("content does not match its digest (%s, %d bytes): the content store's blob is damaged; remove the image and pull it again: %w", got, size, errdefs.ErrDataLoss)
	}
	info, err := vmimage.ProbeDisk(head[:n], size)
	if err != nil {
		return err
	}
	if info.Format != format {
		return fmt.Errorf("media type %s says %s, but the disk's header is %s's (a corrupt qcow2 header?): %w", desc.MediaType, format, info.Format, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (d *Differ) blobPath(dg digest.Digest) string {
	return filepath.Join(d.contentRoot, "blobs", dg.Algorithm().String(), dg.Encoded())
}

// blobStore reads blobs from containerd's local content store's files.
type blobStore struct{ root string }

func (b blobStore) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("digest: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	ra, err := local.OpenReader(filepath.Join(b.root, "blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded()))
	if err != nil {
		return nil, fmt.Errorf("blob %s in %s: %w", desc.Digest, b.root, err)
	}
	return ra, nil
}
