package vmimage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		want         Kind
		invalid      bool
	}{
		{"container", `{"config":{"Labels":{"a":"b"}}}`, Kind{}, false},
		{"no config", `{}`, Kind{}, false},
		{"osv default runtime", `{"config":{"Labels":{"feather.backend":"osv"}}}`, Kind{"osv", "qemu"}, false},
		{"osv qemu", `{"config":{"Labels":{"feather.backend":"osv","feather.runtime":"qemu"}}}`, Kind{"osv", "qemu"}, false},
		{"prototype keys", `{"fledge.backend":"osv","fledge.hypervisor":"qemu"}`, Kind{"osv", "qemu"}, false},
		{"labels win", `{"fledge.backend":"other","config":{"Labels":{"feather.backend":"osv"}}}`, Kind{"osv", "qemu"}, false},
		{"unknown backend", `{"config":{"Labels":{"feather.backend":"wasm"}}}`, Kind{"wasm", "qemu"}, true},
		{"unknown runtime", `{"config":{"Labels":{"feather.backend":"osv","feather.runtime":"firecracker"}}}`, Kind{"osv", "firecracker"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := KindOf([]byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("KindOf = %+v, want %+v", got, tc.want)
			}
			err = got.Validate()
			if tc.invalid != (err != nil) {
				t.Fatalf("Validate = %v, want invalid=%v", err, tc.invalid)
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Errorf("Validate error %v is not ErrInvalidArgument", err)
			}
		})
	}
	if _, err := KindOf([]byte("{")); err == nil {
		t.Error("KindOf accepted broken JSON")
	}
}

func TestDiskFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		head []byte
		want string
	}{
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), FormatQCOW2},
		{"raw boot sector", append(make([]byte, 510), 0x55, 0xaa), FormatRaw},
		{"short", []byte("QF"), FormatRaw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DiskFormat(bytes.NewReader(tc.head))
			if err != nil || got != tc.want {
				t.Errorf("DiskFormat = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestFind(t *testing.T) {
	write := func(t *testing.T, root string, files map[string]string) {
		for name, content := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    Layout // paths relative to the root
		wantErr error
	}{
		{"disk only", map[string]string{DiskPath: "QFI\xfbrest"}, Layout{Disk: DiskPath, DiskFormat: FormatQCOW2}, nil},
		{"direct boot", map[string]string{DiskPath: "raw", KernelPath: "elf", InitrdPath: "cpio"},
			Layout{Disk: DiskPath, DiskFormat: FormatRaw, Kernel: KernelPath, Initrd: InitrdPath}, nil},
		{"instance disk", map[string]string{DiskPath: "raw", InstanceDiskPath: "QFI\xfbrest"},
			Layout{Disk: DiskPath, DiskFormat: FormatRaw, Instance: InstanceDiskPath}, nil},
		{"instance disk not qcow2", map[string]string{DiskPath: "raw", InstanceDiskPath: "raw"}, Layout{}, errdefs.ErrInvalidArgument},
		{"no disk", map[string]string{"bin/sh": "x"}, Layout{}, errdefs.ErrNotFound},
		{"empty disk", map[string]string{DiskPath: ""}, Layout{}, errdefs.ErrInvalidArgument},
		{"initrd without kernel", map[string]string{DiskPath: "raw", InitrdPath: "cpio"}, Layout{}, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tc.files)
			got, err := Find(root)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Find error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rel := func(p string) string {
				if p == "" {
					return ""
				}
				return strings.TrimPrefix(p, root+"/")
			}
			got = Layout{Disk: rel(got.Disk), DiskFormat: got.DiskFormat, Kernel: rel(got.Kernel), Initrd: rel(got.Initrd), Instance: rel(got.Instance)}
			if got != tc.want {
				t.Errorf("Find = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOwnDir(t *testing.T) {
	for _, tc := range []struct {
		name, typ, source string
		options           []string
		want              string
	}{
		{"overlay", "overlay", "overlay", []string{"index=off", "workdir=/sn/2/work", "upperdir=/sn/2/fs", "lowerdir=/sn/1/fs"}, "/sn/2/fs"},
		{"writable bind", "bind", "/sn/3/fs", []string{"rbind", "rw"}, "/sn/3/fs"},
		{"read-only bind (a view)", "bind", "/sn/3/fs", []string{"rbind", "ro"}, ""},
		{"overlay view (no upperdir)", "overlay", "overlay", []string{"lowerdir=/sn/2/fs:/sn/1/fs"}, ""},
		{"other", "erofs", "/sn/4/layer.erofs", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := OwnDir(tc.typ, tc.source, tc.options); got != tc.want {
				t.Errorf("OwnDir(%q, %q, %q) = %q, want %q", tc.typ, tc.source, tc.options, got, tc.want)
			}
		})
	}
}
