package pack

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/schema"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/inspect"
	"github.com/feather-edge/feather/vmimage"
)

// Disk fixtures, made by ../disk/testdata/make.sh: raw.img stores the
// command line `--env=GREETING=hi /hello.so a "b c"` and is bootable.
const fixtures = "../disk/testdata"

func fixture(name string) string { return filepath.Join(fixtures, name) }

// fakeKernel writes a file that passes for an ELF kernel.
func fakeKernel(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "loader.elf")
	if err := os.WriteFile(p, append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 1000)...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func packed(t *testing.T, o Options) (*Packed, inspect.Report) {
	t.Helper()
	p, err := Pack(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r, err := inspect.Inspect(context.Background(), p.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	return p, r
}

func TestPack(t *testing.T) {
	initrd := filepath.Join(t.TempDir(), "initrd")
	os.WriteFile(initrd, []byte("cpio"), 0o644)
	for _, tc := range []struct {
		name    string
		o       Options
		want    inspect.Report // fields compared: Backend, Runtime, Cmd, Env, WorkingDir
		disk    vmimage.DiskInfo
		kernel  bool
		layers  int
		labels  map[string]string
		comment string
	}{
		{name: "raw disk, stored command line", o: Options{Disk: fixture("raw.img")},
			want:   inspect.Report{Backend: "osv", Runtime: "qemu", Cmd: []string{"/hello.so", "a", "b c"}, Env: []string{"GREETING=hi"}},
			disk:   vmimage.DiskInfo{Format: vmimage.FormatRaw, VirtualSize: 128 << 10},
			layers: 1},
		{name: "qcow2, --cmd, env override, workdir, label", o: Options{Disk: fixture("compressed.qcow2"), Cmd: `--cwd=/srv /app.so -x`,
			Env: []string{"A=1"}, Workdir: "/data", Labels: map[string]string{"org.example": "yes"}},
			want:   inspect.Report{Backend: "osv", Runtime: "qemu", Cmd: []string{"/app.so", "-x"}, Env: []string{"A=1"}, WorkingDir: "/data"},
			disk:   vmimage.DiskInfo{Format: vmimage.FormatQCOW2, VirtualSize: 128 << 10},
			layers: 1, labels: map[string]string{"org.example": "yes"}},
		{name: "stored env overridden by --env", o: Options{Disk: fixture("plain.qcow2"), Env: []string{"GREETING=bye", "B=2"}},
			want:   inspect.Report{Backend: "osv", Runtime: "qemu", Cmd: []string{"/hello.so", "a", "b c"}, Env: []string{"GREETING=bye", "B=2"}},
			disk:   vmimage.DiskInfo{Format: vmimage.FormatQCOW2, VirtualSize: 128 << 10},
			layers: 1},
		{name: "zstd qcow2 with --cmd", o: Options{Disk: fixture("zstd.qcow2"), Cmd: "/x"},
			want:   inspect.Report{Backend: "osv", Runtime: "qemu", Cmd: []string{"/x"}},
			disk:   vmimage.DiskInfo{Format: vmimage.FormatQCOW2, VirtualSize: 128 << 10},
			layers: 1},
		{name: "direct boot, uncompressed", o: Options{Disk: fixture("empty.qcow2"), Kernel: fakeKernel(t), Initrd: initrd, Cmd: "/hello", Compression: CompressionNone},
			want:   inspect.Report{Backend: "osv", Runtime: "qemu", Cmd: []string{"/hello"}},
			disk:   vmimage.DiskInfo{Format: vmimage.FormatQCOW2, VirtualSize: 1 << 20},
			kernel: true, layers: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := packed(t, tc.o)
			if r.Backend != tc.want.Backend || r.Runtime != tc.want.Runtime || !reflect.DeepEqual(r.Cmd, tc.want.Cmd) ||
				!reflect.DeepEqual(r.Env, tc.want.Env) || r.WorkingDir != tc.want.WorkingDir {
				t.Errorf("report = %+v\nwant %+v", r, tc.want)
			}
			if r.Disk == nil || r.Disk.DiskInfo != tc.disk {
				t.Errorf("disk = %+v, want %+v", r.Disk, tc.disk)
			}
			if (r.Kernel != nil) != tc.kernel || (r.Kernel != nil && r.Kernel.Format != vmimage.KernelELF) {
				t.Errorf("kernel = %+v, want present=%v", r.Kernel, tc.kernel)
			}
			if tc.kernel && (r.Initrd == nil || r.Initrd.Size != 4) {
				t.Errorf("initrd = %+v", r.Initrd)
			}
			if len(r.Layers) != tc.layers {
				t.Errorf("%d layers, want %d", len(r.Layers), tc.layers)
			}
			for k, v := range tc.labels {
				if r.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, r.Labels[k], v)
				}
			}
		})
	}
}

// TestPackDiskLayer: --disk-layer=raw|qcow2 makes the disk a layer of its
// own media type whose blob is the disk file and whose diff ID is its
// digest; a kernel stays in a tar layer below it.
func TestPackDiskLayer(t *testing.T) {
	for _, tc := range []struct {
		name, disk, layer, mediaType string
		kernel                       bool
	}{
		{"raw", "raw.img", DiskLayerRaw, vmimage.MediaTypeDiskLayerRaw, false},
		{"qcow2 with a kernel", "plain.qcow2", DiskLayerQCOW2, vmimage.MediaTypeDiskLayerQCOW2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Disk: fixture(tc.disk), DiskLayer: tc.layer}
			if tc.kernel {
				o.Kernel = fakeKernel(t)
			}
			p, r := packed(t, o)
			want, err := os.ReadFile(fixture(tc.disk))
			if err != nil {
				t.Fatal(err)
			}
			c, err := image.Read(context.Background(), p.Image)
			if err != nil {
				t.Fatal(err)
			}
			last := len(c.Manifest.Layers) - 1
			l := c.Manifest.Layers[last]
			if l.MediaType != tc.mediaType || l.Digest != digest.FromBytes(want) || l.Size != int64(len(want)) {
				t.Errorf("disk layer %+v, want %s of the disk's %d bytes", l, tc.mediaType, len(want))
			}
			if c.Config.RootFS.DiffIDs[last] != l.Digest {
				t.Errorf("diff ID %s, want the layer's digest %s", c.Config.RootFS.DiffIDs[last], l.Digest)
			}
			if tc.kernel && (last != 1 || c.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip) {
				t.Errorf("layers %+v, want the kernel's tar layer first", c.Manifest.Layers)
			}
			if r.Disk == nil || r.Disk.Format != tc.layer {
				t.Errorf("inspect's disk %+v, want a %s disk", r.Disk, tc.layer)
			}
		})
	}
}

func TestPackReproducible(t *testing.T) {
	o := Options{Disk: fixture("raw.img"), Kernel: fakeKernel(t), Cmd: "/hello", Env: []string{"B=2", "A=1"},
		Labels: map[string]string{"z": "1", "a": "2"}, Annotations: map[string]string{"org.opencontainers.image.version": "1"}}
	a, _ := packed(t, o)
	o.TempDir = t.TempDir()
	b, _ := packed(t, o)
	if a.Manifest.Digest != b.Manifest.Digest {
		t.Fatalf("packing twice gave %s and %s", a.Manifest.Digest, b.Manifest.Digest)
	}
	var ta, tb bytes.Buffer
	ctx := context.Background()
	for _, x := range []struct {
		p *Packed
		w *bytes.Buffer
	}{{a, &ta}, {b, &tb}} {
		x.p.Name = "example.com/app:v1"
		if err := image.WriteTar(ctx, x.w, x.p.Image); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(ta.Bytes(), tb.Bytes()) {
		t.Error("same image, different tarballs")
	}
}

// TestSchema validates the manifest and config Pack writes against the OCI
// image-spec JSON schemas.
func TestSchema(t *testing.T) {
	for _, o := range []Options{
		{Disk: fixture("raw.img")},
		{Disk: fixture("plain.qcow2"), Kernel: fakeKernel(t), Cmd: "/x", Compression: CompressionNone, Annotations: map[string]string{"org.opencontainers.image.created": "2024-01-02T03:04:05Z"}},
	} {
		p, _ := packed(t, o)
		c, err := image.Read(context.Background(), p.Image)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			v    schema.Validator
			name string
			b    []byte
		}{
			{schema.ValidatorMediaTypeManifest, "manifest", c.ManifestJSON},
			{schema.ValidatorMediaTypeImageConfig, "config", c.ConfigJSON},
		} {
			if err := v.v.Validate(bytes.NewReader(v.b)); err != nil {
				t.Errorf("%s does not validate: %v\n%s", v.name, err, v.b)
			}
		}
	}
}

func TestPackRefuses(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a disk\n"), 0o644)
	unbootable := filepath.Join(dir, "zeros.img")
	os.WriteFile(unbootable, make([]byte, 4096), 0o644)
	initrd := filepath.Join(dir, "initrd")
	os.WriteFile(initrd, []byte("cpio"), 0o644)
	for _, tc := range []struct {
		name string
		o    Options
		want string
		is   error
	}{
		{"missing disk", Options{Disk: filepath.Join(dir, "absent.img"), Cmd: "/x"}, "no such file", os.ErrNotExist},
		{"no disk", Options{Cmd: "/x"}, "no disk image", errdefs.ErrInvalidArgument},
		{"not a disk", Options{Disk: text, Cmd: "/x"}, "not a disk image", errdefs.ErrInvalidArgument},
		{"kernel as disk", Options{Disk: fakeKernel(t), Cmd: "/x"}, "--kernel", errdefs.ErrInvalidArgument},
		{"unknown backend", Options{Disk: fixture("raw.img"), Backend: "wasm"}, `unknown backend`, errdefs.ErrInvalidArgument},
		{"unknown runtime", Options{Disk: fixture("raw.img"), Runtime: "firecracker"}, `unknown runtime`, errdefs.ErrInvalidArgument},
		{"kind label", Options{Disk: fixture("raw.img"), Labels: map[string]string{"feather.backend": "osv"}}, "--backend", errdefs.ErrInvalidArgument},
		{"bad env", Options{Disk: fixture("raw.img"), Env: []string{"NOVALUE"}}, "KEY=VALUE", errdefs.ErrInvalidArgument},
		{"bad compression", Options{Disk: fixture("raw.img"), Compression: "lz4"}, "compression", errdefs.ErrInvalidArgument},
		{"bad disk layer", Options{Disk: fixture("raw.img"), DiskLayer: "zip"}, "--disk-layer", errdefs.ErrInvalidArgument},
		{"raw disk layer of a qcow2 disk", Options{Disk: fixture("plain.qcow2"), DiskLayer: DiskLayerRaw}, "use --disk-layer=qcow2", errdefs.ErrInvalidArgument},
		{"qcow2 disk layer of a raw disk", Options{Disk: fixture("raw.img"), DiskLayer: DiskLayerQCOW2}, "use --disk-layer=raw", errdefs.ErrInvalidArgument},
		{"missing kernel", Options{Disk: fixture("raw.img"), Kernel: filepath.Join(dir, "absent")}, "--kernel", os.ErrNotExist},
		{"kernel not a kernel", Options{Disk: fixture("raw.img"), Kernel: text}, "not a kernel", errdefs.ErrInvalidArgument},
		{"initrd without kernel", Options{Disk: fixture("raw.img"), Initrd: initrd}, "without --kernel", errdefs.ErrInvalidArgument},
		{"unbootable without kernel", Options{Disk: unbootable, Cmd: "/x"}, "no boot sector", errdefs.ErrInvalidArgument},
		{"no command anywhere", Options{Disk: fixture("empty.qcow2"), Kernel: fakeKernel(t)}, "--cmd", errdefs.ErrInvalidArgument},
		{"two commands", Options{Disk: fixture("raw.img"), Cmd: "/a; /b"}, "several commands", errdefs.ErrInvalidArgument},
		{"unreadable disk, no --cmd", Options{Disk: fixture("zstd.qcow2")}, "no --cmd given", errdefs.ErrNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			tc.o.TempDir = tmp
			p, err := Pack(context.Background(), tc.o)
			if err == nil {
				p.Close()
				t.Fatal("Pack succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Errorf("Pack error = %v, want one with %q (%v)", err, tc.want, tc.is)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}
