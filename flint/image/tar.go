package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/ocilayout"
)

// Tar is an image read from an OCI image layout tarball; Close closes the
// tarball.
type Tar struct {
	Image
	r *ocilayout.Reader
}

// Close closes the tarball.
func (t *Tar) Close() error { return t.r.Close() }

// OpenTar opens an OCI image layout tarball and picks one image in it:
// named name when name is not "" (by its full name or its tag), else the
// only one. Where the index lists an image index (a multi-platform image),
// the manifest for platform is picked. A tarball with unsafe entry names
// is refused (see ocilayout.Open).
func OpenTar(ctx context.Context, path, name string, platform platforms.MatchComparer) (*Tar, error) {
	r, err := ocilayout.Open(path)
	if err != nil {
		return nil, err
	}
	t := &Tar{r: r}
	t.Blobs = tarProvider{r}
	if err := t.pick(ctx, name, platform); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func (t *Tar) pick(ctx context.Context, name string, platform platforms.MatchComparer) error {
	if name != "" {
		if n, err := NormalizeRef(name); err == nil {
			name = n
		}
	}
	var found []ocispec.Descriptor
	var names []string
	for _, d := range t.r.Index.Manifests {
		full := d.Annotations[ocilayout.AnnotationImageName]
		if full == "" {
			full = d.Annotations[ocispec.AnnotationRefName]
		}
		names = append(names, full)
		if name == "" || full == name || d.Annotations[ocispec.AnnotationRefName] == name {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && name != "":
		return fmt.Errorf("no image named %s in the tarball (it holds: %s): %w", name, strings.Join(names, ", "), errdefs.ErrNotFound)
	case len(found) == 0:
		return fmt.Errorf("the tarball's index.json lists no image: %w", errdefs.ErrInvalidArgument)
	case len(found) > 1:
		return fmt.Errorf("the tarball holds %d images (%s): name the one to use: %w", len(found), strings.Join(names, ", "), errdefs.ErrInvalidArgument)
	}
	d := found[0]
	t.Name = d.Annotations[ocilayout.AnnotationImageName]
	if t.Name != "" {
		if n, err := NormalizeRef(t.Name); err == nil {
			t.Name = n
		}
	}
	m, err := ResolveManifest(ctx, t.Blobs, d, platform)
	if err != nil {
		return err
	}
	t.Manifest = m
	return nil
}

// ResolveManifest returns d if it is a manifest, or, if it is an image
// index, the descriptor of its best manifest for platform.
func ResolveManifest(ctx context.Context, p content.Provider, d ocispec.Descriptor, platform platforms.MatchComparer) (ocispec.Descriptor, error) {
	for depth := 0; images.IsIndexType(d.MediaType); depth++ {
		if depth > 2 {
			return d, fmt.Errorf("image indexes nested too deep: %w", errdefs.ErrInvalidArgument)
		}
		b, err := ReadBlob(ctx, p, d)
		if err != nil {
			return d, fmt.Errorf("read image index: %w", err)
		}
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return d, fmt.Errorf("parse image index %s: %w: %w", d.Digest, err, errdefs.ErrInvalidArgument)
		}
		var cands []ocispec.Descriptor
		for _, m := range idx.Manifests {
			if m.Platform == nil || platform.Match(*m.Platform) {
				cands = append(cands, m)
			}
		}
		if len(cands) == 0 {
			return d, fmt.Errorf("image index %s has no manifest for this platform: %w", d.Digest, errdefs.ErrNotFound)
		}
		slices.SortStableFunc(cands, func(a, b ocispec.Descriptor) int {
			switch {
			case a.Platform == nil || b.Platform == nil:
				return 0
			case platform.Less(*a.Platform, *b.Platform):
				return -1
			case platform.Less(*b.Platform, *a.Platform):
				return 1
			}
			return 0
		})
		d = cands[0]
	}
	if !images.IsManifestType(d.MediaType) {
		return d, fmt.Errorf("%s has media type %q: not an image: %w", d.Digest, d.MediaType, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

type tarProvider struct{ r *ocilayout.Reader }

func (p tarProvider) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	sr, err := p.r.Blob(desc.Digest)
	if err != nil {
		return nil, err
	}
	return sectionReaderAt{sr}, nil
}

// WriteTar writes img as an OCI image layout tarball to w, named img.Name
// in its index. Every blob is checked against its descriptor while copied.
func WriteTar(ctx context.Context, w io.Writer, img Image) error {
	c, err := Read(ctx, img)
	if err != nil {
		return err
	}
	var blobs []ocilayout.Blob
	for _, d := range Blobs(c, img) {
		blobs = append(blobs, ocilayout.Blob{Descriptor: d, Open: func() (io.ReadCloser, error) {
			ra, err := img.Blobs.ReaderAt(ctx, d)
			if err != nil {
				return nil, err
			}
			return readCloser{io.NewSectionReader(ra, 0, d.Size), ra}, nil
		}})
	}
	md := img.Manifest
	if md.Platform == nil && c.Config.OS != "" {
		p := c.Config.Platform
		md.Platform = &p
	}
	md.Annotations = nil
	if img.Name != "" {
		md = ocilayout.Named(md, img.Name)
	}
	return ocilayout.WriteLayout(w, []ocispec.Descriptor{md}, blobs)
}

type readCloser struct {
	io.Reader
	io.Closer
}

// WriteTarFile writes img as an OCI image layout tarball at path, whole or
// not at all: it writes a temporary file beside it and renames it into
// place; on failure it removes the temporary file and leaves path as it
// was.
func WriteTarFile(ctx context.Context, path string, img Image) error {
	return WriteFileAtomic(path, func(w io.Writer) error { return WriteTar(ctx, w, img) })
}

// WriteFileAtomic creates the file at path with what write writes, whole
// or not at all (see WriteTarFile).
func WriteFileAtomic(path string, write func(io.Writer) error) error {
	p, err := WritePending(path, write)
	if err != nil {
		return err
	}
	return p.Commit()
}

// Pending is a file written but not yet in place: Commit puts it there,
// Discard removes it.
type Pending struct{ tmp, path string }

// WritePending writes what write writes to a temporary file beside path
// and syncs it; on failure it removes it.
func WritePending(path string, write func(io.Writer) error) (_ *Pending, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &Pending{tmp: f.Name(), path: path}, nil
}

// Commit renames the file into place.
func (p *Pending) Commit() error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		os.Remove(p.tmp)
		return err
	}
	return nil
}

// Discard removes the file; after Commit it does nothing.
func (p *Pending) Discard() { os.Remove(p.tmp) }

// openFileReaderAt opens a file as a content.ReaderAt.
func openFileReaderAt(path string) (content.ReaderAt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return fileReaderAt{f, fi.Size()}, nil
}

type fileReaderAt struct {
	*os.File
	size int64
}

func (f fileReaderAt) Size() int64 { return f.size }
