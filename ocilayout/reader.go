package ocilayout

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxIndexSize bounds index.json and oci-layout, which are read into memory.
const maxIndexSize = 4 << 20

// Reader reads an OCI image layout tarball in place: Open indexes where
// each blob lies in the file, and Blob reads it from there, so a big layer
// is never copied or held in memory.
type Reader struct {
	// Index is the layout's index.json.
	Index ocispec.Index

	f     *os.File
	blobs map[digest.Digest]span
}

type span struct{ off, size int64 }

// Open indexes the OCI image layout tarball at path. It returns an
// ErrInvalidArgument error, naming the entry, for a tarball that is not an
// OCI image layout or that holds an entry with an absolute path or a ".."
// component: such a tarball is refused whole, never read from.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := &Reader{f: f, blobs: map[digest.Digest]span{}}
	if err := r.scan(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func (r *Reader) scan() error {
	var layout, index []byte
	tr := tar.NewReader(r.f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not an OCI image layout tarball: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		name, err := entryName(h.Name)
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		switch {
		case name == ocispec.ImageLayoutFile:
			layout, err = readSmall(tr, h)
		case name == "index.json":
			index, err = readSmall(tr, h)
		case strings.HasPrefix(name, "blobs/"):
			parts := strings.Split(name, "/")
			if len(parts) != 3 {
				continue
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
			if d.Validate() != nil {
				continue
			}
			// tar.Reader stops right after the header: the file's
			// position is where the content starts.
			off, serr := r.f.Seek(0, io.SeekCurrent)
			if serr != nil {
				return serr
			}
			r.blobs[d] = span{off, h.Size}
		}
		if err != nil {
			return err
		}
	}
	if layout == nil || index == nil {
		return fmt.Errorf("not an OCI image layout tarball: no %s or index.json: %w", ocispec.ImageLayoutFile, errdefs.ErrInvalidArgument)
	}
	var l ocispec.ImageLayout
	if err := json.Unmarshal(layout, &l); err != nil || l.Version != ocispec.ImageLayoutVersion {
		return fmt.Errorf("%s: want imageLayoutVersion %q: %w", ocispec.ImageLayoutFile, ocispec.ImageLayoutVersion, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(index, &r.Index); err != nil {
		return fmt.Errorf("index.json: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// entryName returns a tarball entry's name relative to the layout's root,
// or an error when it is absolute or climbs out with "..".
func entryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q is an absolute path: refusing the tarball: %w", name, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q climbs out of the layout with \"..\": refusing the tarball: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	return path.Clean(name), nil
}

func readSmall(r io.Reader, h *tar.Header) ([]byte, error) {
	if h.Size > maxIndexSize {
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d: %w", h.Name, h.Size, maxIndexSize, errdefs.ErrInvalidArgument)
	}
	return io.ReadAll(r)
}

// Blob returns a reader of the blob with digest d, or an ErrNotFound error.
// The reader is valid until Close; it does not verify the digest.
func (r *Reader) Blob(d digest.Digest) (*io.SectionReader, error) {
	s, ok := r.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the tarball: %w", d, errdefs.ErrNotFound)
	}
	return io.NewSectionReader(r.f, s.off, s.size), nil
}

// Close closes the tarball.
func (r *Reader) Close() error { return r.f.Close() }
