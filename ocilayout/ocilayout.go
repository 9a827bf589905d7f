// Package ocilayout writes OCI image layout tarballs — what `ctr image
// import` and registries' tools read — reproducibly: the same input gives
// the same bytes and digests.
package ocilayout

import (
	"archive/tar"
	"encoding/json"
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
	blobs := map[digest.Digest][]byte{}
	add := func(mediaType string, b []byte) ocispec.Descriptor {
		d := digest.FromBytes(b)
		blobs[d] = b
		return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
	}
	cfg, err := json.Marshal(config)
	if err != nil {
		return err
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    add(ocispec.MediaTypeImageConfig, cfg),
	}
	for _, l := range layers {
		manifest.Layers = append(manifest.Layers, add(ocispec.MediaTypeImageLayer, l))
	}
	mb, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	md := add(ocispec.MediaTypeImageManifest, mb)
	md.Platform = &config.Platform
	tag := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	md.Annotations = map[string]string{"io.containerd.image.name": ref, ocispec.AnnotationRefName: tag}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{md},
	})
	if err != nil {
		return err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	file := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: Epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := file(ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	if err := file("index.json", index); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: Epoch}); err != nil {
			return err
		}
	}
	// Sorted, so that the tarball itself is reproducible.
	for _, d := range slices.Sorted(maps.Keys(blobs)) {
		if err := file("blobs/sha256/"+d.Encoded(), blobs[d]); err != nil {
			return err
		}
	}
	return tw.Close()
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
