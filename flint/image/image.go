// Package image is how Flint holds an OCI image whatever its source — just
// packed, an OCI image layout tarball, or pulled from a registry: the
// descriptor of its manifest and a content.Provider of its blobs. It reads
// the manifest and config, walks the layers' entries (verifying digests and
// refusing unsafe paths), and writes the image as a layout tarball.
package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one single-platform OCI image.
type Image struct {
	// Name is its normalized reference (docker.io/library/app:latest),
	// "" when it has none.
	Name string
	// Manifest is its manifest's descriptor, with the platform when known.
	Manifest ocispec.Descriptor
	// Blobs holds its manifest, config and layers.
	Blobs content.Provider
}

// Contents are an image's manifest and config, parsed, with their bytes.
type Contents struct {
	Manifest     ocispec.Manifest
	ManifestJSON []byte
	Config       ocispec.Image
	ConfigJSON   []byte
}

// maxJSON bounds a manifest or config blob, which are read into memory.
const maxJSON = 8 << 20

// Read reads and parses img's manifest and config, checking their digests.
func Read(ctx context.Context, img Image) (Contents, error) {
	var c Contents
	var err error
	if !images.IsManifestType(img.Manifest.MediaType) {
		return c, fmt.Errorf("%s is a %q, not an image manifest: %w", img.Manifest.Digest, img.Manifest.MediaType, errdefs.ErrInvalidArgument)
	}
	if c.ManifestJSON, err = ReadBlob(ctx, img.Blobs, img.Manifest); err != nil {
		return c, fmt.Errorf("read manifest: %w", err)
	}
	if err := json.Unmarshal(c.ManifestJSON, &c.Manifest); err != nil {
		return c, fmt.Errorf("parse manifest %s: %w: %w", img.Manifest.Digest, err, errdefs.ErrInvalidArgument)
	}
	if !images.IsConfigType(c.Manifest.Config.MediaType) {
		return c, fmt.Errorf("manifest %s: config has media type %q, not an image config: %w", img.Manifest.Digest, c.Manifest.Config.MediaType, errdefs.ErrInvalidArgument)
	}
	if c.ConfigJSON, err = ReadBlob(ctx, img.Blobs, c.Manifest.Config); err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(c.ConfigJSON, &c.Config); err != nil {
		return c, fmt.Errorf("parse config %s: %w: %w", c.Manifest.Config.Digest, err, errdefs.ErrInvalidArgument)
	}
	if len(c.Config.RootFS.DiffIDs) != len(c.Manifest.Layers) {
		return c, fmt.Errorf("config lists %d layer diff IDs for the manifest's %d layers: %w",
			len(c.Config.RootFS.DiffIDs), len(c.Manifest.Layers), errdefs.ErrInvalidArgument)
	}
	return c, nil
}

// ReadBlob reads a small blob (a manifest, index or config) and checks it
// against its descriptor.
func ReadBlob(ctx context.Context, p content.Provider, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxJSON || desc.Size < 0 {
		return nil, fmt.Errorf("blob %s is %d bytes, over the limit of %d: %w", desc.Digest, desc.Size, maxJSON, errdefs.ErrInvalidArgument)
	}
	b, err := content.ReadBlob(ctx, p, desc)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != desc.Size || desc.Digest.Validate() != nil || digest.FromBytes(b) != desc.Digest {
		return nil, fmt.Errorf("blob %s does not match its digest or size: %w", desc.Digest, errdefs.ErrDataLoss)
	}
	return b, nil
}

// Blobs returns the descriptors of all of img's blobs: manifest, config,
// layers.
func Blobs(c Contents, img Image) []ocispec.Descriptor {
	return append([]ocispec.Descriptor{img.Manifest, c.Manifest.Config}, c.Manifest.Layers...)
}

// LayerTypes returns the media types of c's layers.
func LayerTypes(c Contents) []string {
	types := make([]string, len(c.Manifest.Layers))
	for i, l := range c.Manifest.Layers {
		types[i] = l.MediaType
	}
	return types
}

// NormalizeRef returns ref as containerd names images: with its registry
// and a tag (docker.io/library/app:latest). A malformed reference is an
// ErrInvalidArgument error.
func NormalizeRef(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return reference.TagNameOnly(named).String(), nil
}

// Store is a content.Provider of blobs in memory and in files, as Pack
// makes them. It is not safe for concurrent Add, but ReaderAt may be called
// concurrently once filled.
type Store struct {
	blobs map[digest.Digest]func() (content.ReaderAt, error)
}

// AddBytes adds b and returns its descriptor, of the given media type.
func (s *Store) AddBytes(mediaType string, b []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	s.add(d.Digest, func() (content.ReaderAt, error) { return bytesReaderAt{bytes.NewReader(b)}, nil })
	return d
}

// AddFile adds the file at path as the blob with digest d; it is opened at
// each read.
func (s *Store) AddFile(d digest.Digest, path string) {
	s.add(d, func() (content.ReaderAt, error) { return openFileReaderAt(path) })
}

func (s *Store) add(d digest.Digest, open func() (content.ReaderAt, error)) {
	if s.blobs == nil {
		s.blobs = map[digest.Digest]func() (content.ReaderAt, error){}
	}
	s.blobs[d] = open
}

// ReaderAt implements content.Provider.
func (s *Store) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	open, ok := s.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return open()
}

var _ content.Provider = (*Store)(nil)

type bytesReaderAt struct{ *bytes.Reader }

func (bytesReaderAt) Close() error { return nil }

// sectionReaderAt is a content.ReaderAt of a section of a file that
// someone else closes.
type sectionReaderAt struct{ *io.SectionReader }

func (sectionReaderAt) Close() error { return nil }
