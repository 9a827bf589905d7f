package image

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/ocilayout"
)

// manifestOf returns the blobs and descriptor of a one-layer image for
// architecture arch.
func manifestOf(arch string) ([]ocilayout.Blob, ocispec.Descriptor) {
	layer := ocilayout.BytesBlob(ocispec.MediaTypeImageLayer, []byte(arch+" layer"))
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: nil}})
	config := ocilayout.BytesBlob(ocispec.MediaTypeImageConfig, cfg)
	mb, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: config.Descriptor, Layers: []ocispec.Descriptor{layer.Descriptor}})
	m := ocilayout.BytesBlob(ocispec.MediaTypeImageManifest, mb)
	d := m.Descriptor
	d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
	return []ocilayout.Blob{layer, config, m}, d
}

func writeLayout(t *testing.T, manifests []ocispec.Descriptor, blobs []ocilayout.Blob) string {
	p := filepath.Join(t.TempDir(), "layout.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ocilayout.WriteLayout(f, manifests, blobs); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenTar(t *testing.T) {
	ctx := context.Background()
	amdBlobs, amd := manifestOf("amd64")
	armBlobs, arm := manifestOf("arm64")
	blobs := append(amdBlobs, armBlobs...)
	two := writeLayout(t, []ocispec.Descriptor{ocilayout.Named(amd, "docker.io/x/a:v1"), ocilayout.Named(arm, "docker.io/x/b:v1")}, blobs)

	idxJSON, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{arm, amd}})
	idx := ocilayout.BytesBlob(ocispec.MediaTypeImageIndex, idxJSON)
	multi := writeLayout(t, []ocispec.Descriptor{ocilayout.Named(idx.Descriptor, "docker.io/x/multi:v1")}, append(blobs, idx))

	for _, tc := range []struct {
		name, path, image string
		platform          platforms.MatchComparer
		want              string // manifest digest, or error text
	}{
		{"by full name", two, "docker.io/x/b:v1", platforms.All, arm.Digest.String()},
		{"by short name", two, "x/a:v1", platforms.All, amd.Digest.String()},
		{"ambiguous", two, "", platforms.All, "holds 2 images"},
		{"absent", two, "x/c:v1", platforms.All, "no image named"},
		{"index, amd64", multi, "", platforms.Only(ocispec.Platform{OS: "linux", Architecture: "amd64"}), amd.Digest.String()},
		{"index, arm64", multi, "", platforms.Only(ocispec.Platform{OS: "linux", Architecture: "arm64"}), arm.Digest.String()},
		{"index, no match", multi, "", platforms.Only(ocispec.Platform{OS: "linux", Architecture: "riscv64"}), "no manifest for this platform"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := OpenTar(ctx, tc.path, tc.image, tc.platform)
			if strings.HasPrefix(tc.want, "sha256:") {
				if err != nil {
					t.Fatal(err)
				}
				defer img.Close()
				if img.Manifest.Digest.String() != tc.want {
					t.Errorf("picked %s, want %s", img.Manifest.Digest, tc.want)
				}
				return
			}
			if err == nil {
				img.Close()
				t.Fatal("OpenTar succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenTar error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.tar")
	failing := func(w io.Writer) error {
		w.Write([]byte("half"))
		return errors.New("disk full")
	}
	if err := WriteFileAtomic(p, failing); err == nil {
		t.Fatal("WriteFileAtomic succeeded")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	pending, err := WritePending(p, func(w io.Writer) error { _, err := w.Write([]byte("whole")); return err })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("the file is in place before Commit")
	}
	if err := pending.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "whole" {
		t.Errorf("content = %q", b)
	}
}
