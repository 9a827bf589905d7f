package ocilayout

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestWrite(t *testing.T) {
	layers := [][]byte{[]byte("layer one"), []byte("layer two")}
	config := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Created: &Epoch}
	var a, b bytes.Buffer
	for _, w := range []*bytes.Buffer{&a, &b} {
		if err := Write(w, "example.com/x/y:v1", config, layers); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same input, different tarballs")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s has time %v, want %v", h.Name, h.ModTime, Epoch)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(files[ocispec.ImageLayoutFile], &layout); err != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout = %q (%v)", files[ocispec.ImageLayoutFile], err)
	}
	blob := func(d digest.Digest) []byte {
		t.Helper()
		b, ok := files["blobs/sha256/"+d.Encoded()]
		if !ok || digest.FromBytes(b) != d {
			t.Fatalf("blob %s missing or wrong", d)
		}
		return b
	}
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(index.Manifests))
	}
	md := index.Manifests[0]
	if md.Annotations["io.containerd.image.name"] != "example.com/x/y:v1" || md.Annotations[ocispec.AnnotationRefName] != "v1" {
		t.Errorf("manifest annotations = %v", md.Annotations)
	}
	if md.Platform == nil || md.Platform.Architecture != "amd64" {
		t.Errorf("manifest platform = %v", md.Platform)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(blob(md.Digest), &m); err != nil {
		t.Fatal(err)
	}
	blob(m.Config.Digest)
	if len(m.Layers) != 2 {
		t.Fatalf("manifest has %d layers, want 2", len(m.Layers))
	}
	for i, l := range m.Layers {
		if got := blob(l.Digest); !bytes.Equal(got, layers[i]) || l.MediaType != ocispec.MediaTypeImageLayer {
			t.Errorf("layer %d = %q (%s)", i, got, l.MediaType)
		}
	}
}
