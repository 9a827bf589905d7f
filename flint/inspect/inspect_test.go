package inspect

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/vmimage"
)

type entry struct {
	name     string
	typeflag byte
	content  []byte
}

func layer(entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typeflag, Mode: 0o644, Size: int64(len(e.content))}
		if e.typeflag == tar.TypeSymlink {
			h.Linkname, h.Size = "/etc/shadow", 0
		}
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write(e.content)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// build makes an image of uncompressed layers; corrupt breaks the first
// layer's diff ID.
func build(t *testing.T, labels map[string]string, corrupt bool, layers ...[]byte) image.Image {
	var s image.Store
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{Cmd: []string{"/hello"}, Labels: labels}, RootFS: ocispec.RootFS{Type: "layers"}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for i, l := range layers {
		d := digest.FromBytes(l)
		if corrupt && i == 0 {
			d = digest.FromString("something else")
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
		m.Layers = append(m.Layers, s.AddBytes(ocispec.MediaTypeImageLayer, l))
	}
	cb, _ := json.Marshal(cfg)
	m.Config = s.AddBytes(ocispec.MediaTypeImageConfig, cb)
	mb, _ := json.Marshal(m)
	return image.Image{Manifest: s.AddBytes(ocispec.MediaTypeImageManifest, mb), Blobs: &s}
}

var (
	osv      = vmimage.Kind{Backend: vmimage.BackendOSV, Runtime: vmimage.RuntimeQEMU}.Labels()
	rawDisk  = entry{vmimage.DiskPath, tar.TypeReg, append(make([]byte, 510), 0x55, 0xaa)}
	elf      = entry{vmimage.KernelPath, tar.TypeReg, []byte("\x7fELF\x02\x01\x01\x00")}
	qcowDisk = entry{vmimage.DiskPath, tar.TypeReg, append([]byte("QFI\xfb\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x10\x00\x00"), make([]byte, 480)...)}
)

func TestInspect(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		img      image.Image
		disk     string // format, "" for none
		kernel   bool
		problems []string
	}{
		{"vm image", build(t, osv, false, layer(elf), layer(rawDisk)), vmimage.FormatRaw, true, nil},
		{"later layer replaces the disk", build(t, osv, false, layer(rawDisk), layer(qcowDisk)), vmimage.FormatQCOW2, false, nil},
		{"whiteout removes the kernel", build(t, osv, false, layer(elf, rawDisk), layer(entry{"feather/.wh.kernel", tar.TypeReg, nil})), vmimage.FormatRaw, false, nil},
		{"container image", build(t, nil, false, layer(entry{"bin/sh", tar.TypeReg, []byte("x")})), "", false,
			[]string{"no feather.backend label", "no /feather/disk"}},
		{"unknown backend", build(t, map[string]string{vmimage.LabelBackend: "wasm"}, false, layer(rawDisk)), vmimage.FormatRaw, false,
			[]string{"unknown backend"}},
		{"disk is a symlink", build(t, osv, false, layer(entry{vmimage.DiskPath, tar.TypeSymlink, nil})), "", false,
			[]string{"not a regular file"}},
		{"disk is no disk", build(t, osv, false, layer(entry{vmimage.DiskPath, tar.TypeReg, []byte("text\n")})), "", false,
			[]string{"whole 512-byte sectors"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Inspect(ctx, tc.img)
			if err != nil {
				t.Fatal(err)
			}
			if (r.Disk != nil) != (tc.disk != "") || (r.Disk != nil && r.Disk.Format != tc.disk) {
				t.Errorf("disk = %+v, want %q", r.Disk, tc.disk)
			}
			if (r.Kernel != nil) != tc.kernel {
				t.Errorf("kernel = %+v, want %v", r.Kernel, tc.kernel)
			}
			all := strings.Join(r.Errors, "; ")
			if len(tc.problems) == 0 && (len(r.Errors) != 0 || r.Check() != nil) {
				t.Errorf("problems: %s", all)
			}
			for _, p := range tc.problems {
				if !strings.Contains(all, p) || !errdefs.IsFailedPrecondition(r.Check()) {
					t.Errorf("problems %q lack %q", all, p)
				}
			}
			var text, js bytes.Buffer
			if err := r.WriteText(&text); err != nil || !strings.Contains(text.String(), "Digest:") {
				t.Errorf("WriteText: %v\n%s", err, text.String())
			}
			if err := r.WriteJSON(&js); err != nil || !json.Valid(js.Bytes()) {
				t.Errorf("WriteJSON: %v", err)
			}
		})
	}
}

func TestInspectRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		img  image.Image
		want string
		is   error
	}{
		{"diff ID mismatch", build(t, osv, true, layer(rawDisk)), "diff ID", errdefs.ErrDataLoss},
		{"dotdot", build(t, osv, false, layer(rawDisk, entry{"../x", tar.TypeReg, []byte("x")})), "climbs out", errdefs.ErrInvalidArgument},
		{"absolute", build(t, osv, false, layer(entry{"/feather/disk", tar.TypeReg, []byte("x")})), "absolute", errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inspect(ctx, tc.img)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errorsIs(err, tc.is) {
				t.Errorf("Inspect = %v, want %q (%v)", err, tc.want, tc.is)
			}
		})
	}
}

func errorsIs(err, target error) bool {
	switch target {
	case errdefs.ErrDataLoss:
		return errdefs.IsDataLoss(err)
	case errdefs.ErrInvalidArgument:
		return errdefs.IsInvalidArgument(err)
	}
	return false
}
