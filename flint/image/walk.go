package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/vmimage"
)

// Entry is one entry of a layer, as Walk gives it.
type Entry struct {
	// Layer is the index of its layer in the manifest.
	Layer int
	// Path is its cleaned path in the root filesystem (vmimage.CleanPath).
	Path string
	// Header is its tar header.
	Header *tar.Header
	// Content reads a regular file's content; only valid during the call.
	Content io.Reader
}

// Walk calls fn for each entry of each of img's layers, in order. It
// refuses — stops with an ErrInvalidArgument error naming the entry — a
// layer holding an absolute path or one with a ".." component, or a hard
// link whose target is such a path; and with an ErrDataLoss error a layer
// whose content does not match its digest or its config's diff ID, once
// the layer has been read to its end. Since the check ends the layer, fn
// may have seen the layer's entries by then: callers that write files
// must write into a place they discard on error.
func Walk(ctx context.Context, img Image, c Contents, fn func(Entry) error) error {
	for i, l := range c.Manifest.Layers {
		if err := walkLayer(ctx, img, i, l, c.Config.RootFS.DiffIDs[i], fn); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
	}
	return nil
}

func walkLayer(ctx context.Context, img Image, i int, l ocispec.Descriptor, diffID digest.Digest, fn func(Entry) error) error {
	if _, ok := vmimage.DiskLayerFormat(l.MediaType); ok {
		return walkDiskLayer(ctx, img, i, l, diffID, fn)
	}
	if !images.IsLayerType(l.MediaType) {
		return fmt.Errorf("media type %q is not a layer: %w", l.MediaType, errdefs.ErrInvalidArgument)
	}
	ra, err := img.Blobs.ReaderAt(ctx, l)
	if err != nil {
		return err
	}
	defer ra.Close()
	if l.Digest.Validate() != nil || diffID.Validate() != nil {
		return fmt.Errorf("invalid digest or diff ID: %w", errdefs.ErrInvalidArgument)
	}
	blobCheck := l.Digest.Verifier()
	raw := io.TeeReader(io.NewSectionReader(ra, 0, l.Size), blobCheck)
	tarStream, closeFn, err := decompress(raw, l.MediaType)
	if err != nil {
		return err
	}
	defer closeFn()
	diffCheck := diffID.Verifier()
	tr := tar.NewReader(io.TeeReader(tarStream, diffCheck))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		p, err := vmimage.CleanPath(h.Name)
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeLink {
			if _, err := vmimage.CleanPath(h.Linkname); err != nil {
				return fmt.Errorf("hard link %s: %w", h.Name, err)
			}
		}
		if err := fn(Entry{Layer: i, Path: p, Header: h, Content: tr}); err != nil {
			return err
		}
	}
	// Read what is left (tar padding, compression trailer) so that the
	// checks see every byte.
	if _, err := io.Copy(diffCheck, tarStream); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if !blobCheck.Verified() {
		return fmt.Errorf("content does not match its digest: %w", errdefs.ErrDataLoss)
	}
	if !diffCheck.Verified() {
		return fmt.Errorf("uncompressed content does not match diff ID %s: %w", diffID, errdefs.ErrDataLoss)
	}
	return nil
}

// walkDiskLayer gives a disk layer (vmimage.MediaTypeDiskLayerRaw, …)
// as the entries a tar layer of the disk would hold: the directory above
// vmimage.DiskPath and the disk. Its diff ID must be its digest.
func walkDiskLayer(ctx context.Context, img Image, i int, l ocispec.Descriptor, diffID digest.Digest, fn func(Entry) error) error {
	if l.Digest.Validate() != nil || diffID != l.Digest {
		return fmt.Errorf("a disk layer's diff ID is its digest, the config says %s: %w", diffID, errdefs.ErrInvalidArgument)
	}
	ra, err := img.Blobs.ReaderAt(ctx, l)
	if err != nil {
		return err
	}
	defer ra.Close()
	check := l.Digest.Verifier()
	r := io.TeeReader(io.NewSectionReader(ra, 0, l.Size), check)
	dir := path.Dir(vmimage.DiskPath)
	if err := fn(Entry{Layer: i, Path: dir, Header: &tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}}); err != nil {
		return err
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: vmimage.DiskPath, Mode: 0o444, Size: l.Size}
	if err := fn(Entry{Layer: i, Path: vmimage.DiskPath, Header: h, Content: r}); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if !check.Verified() {
		return fmt.Errorf("content does not match its digest: %w", errdefs.ErrDataLoss)
	}
	return nil
}

// decompress returns the tar stream of a layer of the given media type.
func decompress(r io.Reader, mediaType string) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(mediaType, "+gzip") || strings.HasSuffix(mediaType, ".tar.gzip") || mediaType == images.MediaTypeDockerSchema2Layer:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		zr.Multistream(false)
		return zr, func() { zr.Close() }, nil
	case strings.HasSuffix(mediaType, "+zstd"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	case mediaType == ocispec.MediaTypeImageLayer || strings.HasSuffix(mediaType, ".tar"):
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("layer media type %q: unknown compression: %w", mediaType, errdefs.ErrNotImplemented)
}
