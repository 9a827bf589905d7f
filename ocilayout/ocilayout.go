// Package ocilayout writes OCI image layout tarballs — what `ctr image
// import` and registries' tools read — reproducibly: the same input gives
// the same bytes and digests.
package ocilayout

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Epoch is the time stamp to give every file and config written into an
// image, so that the same input gives the same digests.
var Epoch = time.Unix(0, 0).UTC()

// Write writes an OCI image layout tarball (oci-layout, index.json,
// blobs/sha256/…) of one image to w: config and uncompressed tar layers, its
// manifest named ref in the index by both the containerd annotation (which
// `ctr image import` uses) and the OCI one (the tag). Same input, same bytes.
func Write(w io.Writer, ref string, config ocispec.Image, layers [][]byte) error {
	cfg, err := json.Marshal(config)
	if err != nil {
		return err
	}
	blobs := []Blob{BytesBlob(ocispec.MediaTypeImageConfig, cfg)}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    blobs[0].Descriptor,
	}
	for _, l := range layers {
		b := BytesBlob(ocispec.MediaTypeImageLayer, l)
		blobs = append(blobs, b)
		manifest.Layers = append(manifest.Layers, b.Descriptor)
	}
	mb, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	mblob := BytesBlob(ocispec.MediaTypeImageManifest, mb)
	md := mblob.Descriptor
	md.Platform = &config.Platform
	return WriteLayout(w, []ocispec.Descriptor{Named(md, ref)}, append(blobs, mblob))
}

// Blob is one blob to write into a layout: its descriptor and its content.
type Blob struct {
	Descriptor ocispec.Descriptor
	// Open returns the content; WriteLayout reads it once and closes it.
	Open func() (io.ReadCloser, error)
}

// BytesBlob returns the Blob of b, of the given media type.
func BytesBlob(mediaType string, b []byte) Blob {
	return Blob{
		Descriptor: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))},
		Open:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
	}
}

// Named returns manifest descriptor d named ref for an index: the
// containerd annotation (the full reference, which `ctr image import`
// uses) and the OCI one (the tag, or the whole ref when it has none).
func Named(d ocispec.Descriptor, ref string) ocispec.Descriptor {
	tag := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	d.Annotations = maps.Clone(d.Annotations)
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[AnnotationImageName] = ref
	d.Annotations[ocispec.AnnotationRefName] = tag
	return d
}

// AnnotationImageName is the index annotation holding an image's full
// name, as containerd's import and export use it.
const AnnotationImageName = "io.containerd.image.name"

// WriteLayout writes an OCI image layout tarball to w: oci-layout,
// index.json listing manifests in the order given, then the blobs sorted
// by digest, each once. Every blob is checked against its descriptor while
// it is copied — a wrong size or digest fails the write — so a tarball
// that WriteLayout completed is whole. Entries have fixed times and modes:
// the same input gives the same bytes. It does not close w.
func WriteLayout(w io.Writer, manifests []ocispec.Descriptor, blobs []Blob) error {
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: manifests,
	})
	if err != nil {
		return err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	byDigest := map[digest.Digest]Blob{}
	for _, b := range blobs {
		if err := b.Descriptor.Digest.Validate(); err != nil {
			return fmt.Errorf("blob %q: %w", b.Descriptor.Digest, err)
		}
		byDigest[b.Descriptor.Digest] = b
	}

	tw := tar.NewWriter(w)
	header := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: Epoch})
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{ocispec.ImageLayoutFile, layout}, {"index.json", index}} {
		if err := header(f.name, int64(len(f.b))); err != nil {
			return err
		}
		if _, err := tw.Write(f.b); err != nil {
			return err
		}
	}
	dirs := []string{"blobs/"}
	for _, alg := range slices.Sorted(maps.Keys(algorithms(byDigest))) {
		dirs = append(dirs, "blobs/"+alg+"/")
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: Epoch}); err != nil {
			return err
		}
	}
	// Sorted, so that the tarball itself is reproducible.
	for _, d := range slices.Sorted(maps.Keys(byDigest)) {
		b := byDigest[d]
		if err := header(blobPath(d), b.Descriptor.Size); err != nil {
			return err
		}
		if err := copyBlob(tw, b); err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
	}
	return tw.Close()
}

func algorithms(blobs map[digest.Digest]Blob) map[string]bool {
	algs := map[string]bool{}
	for d := range blobs {
		algs[d.Algorithm().String()] = true
	}
	return algs
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// copyBlob copies b's content to w, checking its size and digest.
func copyBlob(w io.Writer, b Blob) error {
	rc, err := b.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	v := b.Descriptor.Digest.Verifier()
	n, err := io.CopyN(io.MultiWriter(w, v), rc, b.Descriptor.Size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("content is %d bytes, descriptor says %d", n, b.Descriptor.Size)
	}
	if err != nil {
		return err
	}
	if m, _ := rc.Read(make([]byte, 1)); m > 0 {
		return fmt.Errorf("content is longer than the %d bytes its descriptor says", b.Descriptor.Size)
	}
	if !v.Verified() {
		return fmt.Errorf("content does not match its digest")
	}
	return nil
}

// WriteFile is Write to a new file at path.
func WriteFile(path, ref string, config ocispec.Image, layers [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, ref, config, layers); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
