package ocilayout

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
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

func TestReader(t *testing.T) {
	layers := [][]byte{[]byte("layer one"), []byte("layer two")}
	config := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Created: &Epoch}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteFile(path, "example.com/x/y:v1", config, layers); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Index.Manifests) != 1 || r.Index.Manifests[0].Annotations[AnnotationImageName] != "example.com/x/y:v1" {
		t.Fatalf("index = %+v", r.Index)
	}
	for _, l := range layers {
		sr, err := r.Blob(digest.FromBytes(l))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(sr)
		if !bytes.Equal(got, l) {
			t.Errorf("blob = %q, want %q", got, l)
		}
	}
	if _, err := r.Blob(digest.FromString("absent")); !errdefs.IsNotFound(err) {
		t.Errorf("absent blob: %v, want ErrNotFound", err)
	}
}

func TestReaderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries map[string]string
		want    string
	}{
		{"dotdot", map[string]string{"oci-layout": `{"imageLayoutVersion":"1.0.0"}`, "index.json": "{}", "blobs/../../evil": "x"}, "climbs out"},
		{"absolute", map[string]string{"oci-layout": `{"imageLayoutVersion":"1.0.0"}`, "index.json": "{}", "/etc/evil": "x"}, "absolute path"},
		{"no index", map[string]string{"oci-layout": `{"imageLayoutVersion":"1.0.0"}`}, "no oci-layout or index.json"},
		{"bad version", map[string]string{"oci-layout": `{"imageLayoutVersion":"9"}`, "index.json": "{}"}, "imageLayoutVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for name, content := range tc.entries {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(content)), Mode: 0o644})
				tw.Write([]byte(content))
			}
			tw.Close()
			path := filepath.Join(t.TempDir(), "bad.tar")
			os.WriteFile(path, buf.Bytes(), 0o644)
			r, err := Open(path)
			if err == nil {
				r.Close()
				t.Fatal("Open accepted a bad tarball")
			}
			if !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("Open error = %v, want %q (ErrInvalidArgument)", err, tc.want)
			}
		})
	}
}

func TestWriteLayoutChecksBlobs(t *testing.T) {
	good := BytesBlob(ocispec.MediaTypeImageLayer, []byte("content"))
	for _, tc := range []struct {
		name string
		blob Blob
		want string
	}{
		{"wrong digest", Blob{Descriptor: ocispec.Descriptor{Digest: digest.FromString("other"), Size: 7}, Open: good.Open}, "does not match"},
		{"too short", Blob{Descriptor: ocispec.Descriptor{Digest: good.Descriptor.Digest, Size: 8}, Open: good.Open}, "7 bytes"},
		{"too long", Blob{Descriptor: ocispec.Descriptor{Digest: good.Descriptor.Digest, Size: 3}, Open: good.Open}, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteLayout(io.Discard, nil, []Blob{tc.blob})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WriteLayout error = %v, want %q", err, tc.want)
			}
		})
	}
}
