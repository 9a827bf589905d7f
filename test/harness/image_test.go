package harness

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestWriteBusyboxImage checks the layout: every blob is named by its digest,
// the index names the image, the layer holds busybox and its applets, and
// writing twice gives the same bytes.
func TestWriteBusyboxImage(t *testing.T) {
	if _, err := os.Stat(busyboxPath); err != nil {
		Prerequisite(t, false, "busybox-static not installed: run `make deps`")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	for _, p := range []string{a, b} {
		if err := WriteBusyboxImage(p, "docker.io/feather/busybox:test"); err != nil {
			t.Fatal(err)
		}
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("two writes of the same image differ")
	}

	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(ab))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	blob := func(d digest.Digest) []byte {
		t.Helper()
		b, ok := files["blobs/sha256/"+d.Encoded()]
		if !ok {
			t.Fatalf("blob %s missing", d)
		}
		if got := digest.FromBytes(b); got != d {
			t.Fatalf("blob %s has digest %s", d, got)
		}
		return b
	}
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/feather/busybox:test" ||
		index.Manifests[0].Annotations[ocispec.AnnotationRefName] != "test" {
		t.Fatalf("index = %+v", index)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(m.Config.Digest), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != m.Layers[0].Digest {
		t.Fatalf("layers %v vs diff IDs %v", m.Layers, cfg.RootFS.DiffIDs)
	}
	layer := map[string]*tar.Header{}
	lr := tar.NewReader(bytes.NewReader(blob(m.Layers[0].Digest)))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		layer[h.Name] = h
	}
	if h := layer["bin/busybox"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("bin/busybox missing or not executable: %+v", h)
	}
	for _, applet := range []string{"sh", "echo", "sleep", "cat"} {
		if h := layer["bin/"+applet]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s is not a link to busybox: %+v", applet, h)
		}
	}
}

// TestWriteAgnhostImage checks what the e2e suite relies on in agnhost's
// image: upstream's entrypoint and command, /agnhost and /agnhost-2, a shell,
// and the user and group upstream's Dockerfile adds.
func TestWriteAgnhostImage(t *testing.T) {
	if _, err := os.Stat(busyboxPath); err != nil {
		Prerequisite(t, false, "busybox-static not installed: run `make deps`")
	}
	p := filepath.Join(t.TempDir(), "agnhost.tar")
	if err := WriteAgnhostImage(p, "docker.io/feather/agnhost:test", []byte("#!agnhost")); err != nil {
		t.Fatal(err)
	}
	files := tarFiles(t, mustRead(t, p))
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"].data, &index); err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(files["blobs/sha256/"+index.Manifests[0].Digest.Encoded()].data, &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(files["blobs/sha256/"+m.Config.Digest.Encoded()].data, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != "/agnhost" {
		t.Errorf("entrypoint = %q, want [/agnhost]", got)
	}
	if got := cfg.Config.Cmd; len(got) != 1 || got[0] != "pause" {
		t.Errorf("cmd = %q, want [pause]", got)
	}
	layer := tarFiles(t, files["blobs/sha256/"+m.Layers[0].Digest.Encoded()].data)
	if f := layer["agnhost"]; f == nil || string(f.data) != "#!agnhost" || f.hdr.Mode&0o111 == 0 {
		t.Errorf("agnhost missing, wrong or not executable: %+v", f)
	}
	if f := layer["agnhost-2"]; f == nil || f.hdr.Typeflag != tar.TypeSymlink || f.hdr.Linkname != "agnhost" {
		t.Errorf("agnhost-2 is not a link to agnhost: %+v", f)
	}
	if f := layer["bin/curl"]; f == nil || !bytes.HasPrefix(f.data, []byte("#!/bin/sh\n")) || f.hdr.Mode&0o111 == 0 {
		t.Errorf("bin/curl missing or not an executable script: %+v", f)
	}
	if f := layer["bin/sh"]; f == nil || f.hdr.Linkname != "busybox" {
		t.Errorf("bin/sh is not busybox: %+v", f)
	}
	if f := layer["etc/passwd"]; f == nil || !bytes.Contains(f.data, []byte("\nuser-defined-in-image:x:1000:")) || !bytes.HasPrefix(f.data, []byte("root:x:0:0:")) {
		t.Errorf("etc/passwd lacks root or user-defined-in-image: %+v", f)
	}
	if f := layer["etc/group"]; f == nil || !bytes.Contains(f.data, []byte("\ngroup-defined-in-image:x:50000:user-defined-in-image\n")) {
		t.Errorf("etc/group lacks group-defined-in-image: %+v", f)
	}
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func tarFiles(t *testing.T, b []byte) map[string]*tarFile {
	t.Helper()
	out := map[string]*tarFile{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out[h.Name] = &tarFile{hdr: h, data: data}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
