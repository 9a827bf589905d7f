package build

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feather-edge/feather/test/harness"
)

func TestMBR(t *testing.T) {
	code := bytes.Repeat([]byte{0xcc}, 440)
	b := MBR(code, 2048, 40960)
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		{"size", len(b), 512},
		{"boot code", bytes.Equal(b[:440], code), true},
		{"signature", binary.LittleEndian.Uint32(b[440:]), uint32(diskSig)},
		{"active", b[446], byte(0x80)},
		{"type", b[446+4], byte(0x0e)},
		{"start", binary.LittleEndian.Uint32(b[446+8:]), uint32(2048)},
		{"sectors", binary.LittleEndian.Uint32(b[446+12:]), uint32(40960)},
		{"other entries empty", bytes.Count(b[462:510], []byte{0}), 48},
		{"boot signature", [2]byte{b[510], b[511]}, [2]byte{0x55, 0xaa}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestBootDisk builds a boot disk from stand-in kernel and initrd files and
// checks its layout: MBR, sectors 1…2047 zero (the OSv command line goes at
// byte 512), the FAT partition holding the files and syslinux.
func TestBootDisk(t *testing.T) {
	for _, tool := range append(diskTools, [2]string{"mdir", "mtools"}) {
		_, err := exec.LookPath(tool[0])
		harness.Prerequisite(t, err == nil, tool[0]+" not found (Debian package "+tool[1]+"): run `make deps`")
	}
	_, err := os.Stat(DefaultMBR)
	harness.Prerequisite(t, err == nil, DefaultMBR+" not found (Debian package syslinux-common): run `make deps`")

	dir := t.TempDir()
	out := filepath.Join(dir, "disk.qcow2")
	kernel := bytes.Repeat([]byte("K"), 3<<20)
	if err := BootDisk(t.Context(), dir, DefaultMBR, kernel, []byte("initrd"), out); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "check.raw")
	if b, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", out, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	disk, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if disk[510] != 0x55 || disk[511] != 0xaa || disk[446] != 0x80 {
		t.Errorf("sector 0 is not a bootable MBR")
	}
	if n := bytes.Count(disk[512:partStart*512], []byte{0}); n != (partStart-1)*512 {
		t.Errorf("sectors 1…%d are not all zero", partStart-1)
	}
	part := filepath.Join(dir, "check.part")
	if err := os.WriteFile(part, disk[partStart*512:], 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mdir", "-a", "-b", "-i", part, "::/")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v: %s", err, b)
	}
	for _, f := range []string{"VMLINUZ", "INITRD", "SYSLINUX.CFG", "LDLINUX.SYS", "LDLINUX.C32"} {
		if !strings.Contains(strings.ToUpper(string(b)), "::/"+f) {
			t.Errorf("boot partition lacks %s; it holds:\n%s", f, b)
		}
	}
	if hidden := binary.LittleEndian.Uint32(disk[partStart*512+28:]); hidden != partStart {
		t.Errorf("boot sector's hidden sectors = %d, want %d", hidden, partStart)
	}
}

func TestLayer(t *testing.T) {
	files := map[string][]byte{"feather/kernel": []byte("k"), "feather/disk": []byte("d")}
	a, err := Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("Layer is not reproducible")
	}
	got, err := readTar(a)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"feather/", "feather/disk", "feather/kernel"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("layer entries %v, want %v", got, want)
	}
}

// readTar lists a tar archive's entry names in order.
func readTar(b []byte) ([]string, error) {
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names = append(names, h.Name)
	}
}
