package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/ocilayout"
)

func TestUnpack(t *testing.T) {
	ctx := context.Background()
	p, err := pack.Pack(ctx, pack.Options{Disk: "../disk/testdata/raw.img", TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := filepath.Join(t.TempDir(), "rootfs")
	res, err := Unpack(ctx, p.Image, dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Files, " ") != "feather/disk" {
		t.Errorf("files = %v", res.Files)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "feather/disk"))
	want, _ := os.ReadFile("../disk/testdata/raw.img")
	if !bytes.Equal(got, want) {
		t.Error("unpacked disk differs from the packed one")
	}
	if _, err := Unpack(ctx, p.Image, dir); err == nil {
		t.Error("Unpack into an existing directory succeeded")
	}
}

// evilImage writes an OCI layout tarball whose one layer holds entries.
func evilImage(t *testing.T, entries []tar.Header) string {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, h := range entries {
		h.Mode = 0o644
		if h.Typeflag == tar.TypeReg {
			h.Size = 4
		}
		tw.WriteHeader(&h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("evil"))
		}
	}
	tw.Close()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{Cmd: []string{"/x"}, Labels: map[string]string{"feather.backend": "osv"}},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer.Bytes())}}}
	path := filepath.Join(t.TempDir(), "evil.tar")
	if err := ocilayout.WriteFile(path, "example.com/evil:v1", cfg, [][]byte{layer.Bytes()}); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnpackRefusesEscapes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		want    string
	}{
		{"dotdot", []tar.Header{{Name: "feather/disk", Typeflag: tar.TypeReg}, {Name: "../../evil", Typeflag: tar.TypeReg}}, "climbs out"},
		{"absolute", []tar.Header{{Name: "/tmp/evil", Typeflag: tar.TypeReg}}, "absolute"},
		{"hard link out", []tar.Header{{Name: "feather/disk", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}}, "climbs out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tar := evilImage(t, tc.entries)
			img, err := image.OpenTar(ctx, tar, "", platforms.All)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			parent := t.TempDir()
			dir := filepath.Join(parent, "out", "rootfs")
			os.MkdirAll(filepath.Dir(dir), 0o755)
			_, err = Unpack(ctx, img.Image, dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Unpack error = %v, want one with %q", err, tc.want)
			}
			for _, p := range []string{dir, filepath.Join(parent, "evil"), filepath.Join(parent, "out", "evil")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
			if left, _ := os.ReadDir(filepath.Dir(dir)); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestUnpackSymlink: a symlink is not created, so a file "under" it lands
// inside the target, never where the link points.
func TestUnpackSymlink(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	tarball := evilImage(t, []tar.Header{{Name: "feather", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "feather/evil", Typeflag: tar.TypeReg}})
	img, err := image.OpenTar(ctx, tarball, "", platforms.All)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	dir := filepath.Join(t.TempDir(), "rootfs")
	res, err := Unpack(ctx, img.Image, dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Skipped, " ") != "feather" || strings.Join(res.Files, " ") != "feather/evil" {
		t.Errorf("result = %+v", res)
	}
	if _, err := os.Lstat(filepath.Join(outside, "evil")); err == nil {
		t.Error("a file was written through the symlink")
	}
}
