package vmimage

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// qcow2Header returns a qcow2 header: version, cluster bits, virtual size,
// backing file offset and crypt method as given.
func qcow2Header(version, clusterBits uint32, size, backing uint64, crypt uint32) []byte {
	h := make([]byte, 104)
	copy(h, qcow2Magic)
	be := binary.BigEndian
	be.PutUint32(h[4:], version)
	be.PutUint64(h[8:], backing)
	be.PutUint32(h[20:], clusterBits)
	be.PutUint64(h[24:], size)
	be.PutUint32(h[32:], crypt)
	return h
}

func TestProbeDisk(t *testing.T) {
	at := func(off int, s string) []byte {
		b := make([]byte, 1024)
		copy(b[off:], s)
		return b
	}
	for _, tc := range []struct {
		name string
		head []byte
		size int64
		want DiskInfo
		err  string // in the error; "" for none
	}{
		{"qcow2 v3", qcow2Header(3, 16, 1<<30, 0, 0), 200 << 10, DiskInfo{FormatQCOW2, 1 << 30}, ""},
		{"qcow2 v2", qcow2Header(2, 16, 6<<20, 0, 0), 1 << 20, DiskInfo{FormatQCOW2, 6 << 20}, ""},
		{"raw", append(make([]byte, 510), 0x55, 0xaa), 1 << 20, DiskInfo{FormatRaw, 1 << 20}, ""},
		{"empty", nil, 0, DiskInfo{}, "empty"},
		{"text", []byte("hello, world\n"), 13, DiskInfo{}, "whole 512-byte sectors"},
		{"elf", at(0, "\x7fELF"), 4096, DiskInfo{}, "--kernel"},
		{"bzImage", at(0x202, "HdrS"), 4096, DiskInfo{}, "Linux kernel"},
		{"gzip", at(0, "\x1f\x8b\x08"), 4096, DiskInfo{}, "gunzip"},
		{"tar", at(257, "ustar"), 4096, DiskInfo{}, "tar archive"},
		{"vmdk", at(0, "KDMV"), 4096, DiskInfo{}, "qemu-img convert"},
		{"qcow2 backing file", qcow2Header(3, 16, 1<<30, 512, 0), 1 << 20, DiskInfo{}, "backing file"},
		{"qcow2 encrypted", qcow2Header(3, 16, 1<<30, 0, 1), 1 << 20, DiskInfo{}, "encrypted"},
		{"qcow2 version", qcow2Header(4, 16, 1<<30, 0, 0), 1 << 20, DiskInfo{}, "version 4"},
		{"qcow2 cluster bits", qcow2Header(3, 40, 1<<30, 0, 0), 1 << 20, DiskInfo{}, "cluster size"},
		{"qcow2 zero size", qcow2Header(3, 16, 0, 0, 0), 1 << 20, DiskInfo{}, "virtual size"},
		{"qcow2 truncated", []byte("QFI\xfb\x00\x00\x00\x03"), 8, DiskInfo{}, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProbeDisk(tc.head, tc.size)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Errorf("ProbeDisk = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("ProbeDisk error = %v, want one with %q (ErrInvalidArgument)", err, tc.err)
			}
		})
	}
}

func TestProbeKernel(t *testing.T) {
	bz := make([]byte, 1024)
	copy(bz[0x202:], "HdrS")
	for _, tc := range []struct {
		name string
		head []byte
		want string
	}{
		{"elf", []byte("\x7fELF\x02\x01\x01"), KernelELF},
		{"bzImage", bz, KernelBzImage},
		{"qcow2", qcow2Header(3, 16, 1<<20, 0, 0), ""},
		{"text", []byte("#!/bin/sh\n"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProbeKernel(tc.head)
			if got != tc.want || (tc.want == "") != (err != nil) {
				t.Errorf("ProbeKernel = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"feather/disk", "feather/disk", ""},
		{"./feather/disk", "feather/disk", ""},
		{"feather/", "feather", ""},
		{"/etc/passwd", "", "absolute"},
		{"../evil", "", "climbs out"},
		{"feather/../../evil", "", "climbs out"},
		{`..\evil`, "", "climbs out"},
		{"", "", "absolute"},
	} {
		got, err := CleanPath(tc.in)
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CleanPath(%q) = %q, %v; want %q, error with %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestWriteLayer(t *testing.T) {
	write := func() []byte {
		var buf bytes.Buffer
		err := WriteLayer(&buf, []File{
			{Path: KernelPath, Size: 3, Content: strings.NewReader("elf")},
			{Path: DiskPath, Size: 4, Content: strings.NewReader("disk")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := write(), write()
	if !bytes.Equal(a, b) {
		t.Fatal("same files, different layers")
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "feather/ feather/disk feather/kernel" {
		t.Errorf("entries = %s", got)
	}
	err := WriteLayer(io.Discard, []File{{Path: DiskPath, Size: 10, Content: strings.NewReader("short")}})
	if err == nil || !strings.Contains(err.Error(), "change while packing") {
		t.Errorf("short content: %v", err)
	}
	if err := WriteLayer(io.Discard, []File{{Path: "../x", Size: 1, Content: strings.NewReader("x")}}); err == nil {
		t.Error("WriteLayer wrote a path outside the root")
	}
}
