package build

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/feather-edge/feather/shim-osv/testguest/guestinit"
)

// cpioEntry is one entry read back from a newc archive.
type cpioEntry struct {
	mode         uint32
	data         string
	rmaj, rmin   uint32
	mtime, nlink uint32
}

// readCPIO parses a newc archive up to its trailer.
func readCPIO(t *testing.T, b []byte) (map[string]cpioEntry, []string) {
	t.Helper()
	entries := map[string]cpioEntry{}
	var order []string
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad cpio header at offset %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("cpio header at %d field %d: %v", off, i, err)
			}
			return uint32(v)
		}
		mode, nlink, mtime, size, rmaj, rmin, namesize := field(1), field(4), field(5), int(field(6)), field(9), field(10), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		data := align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return entries, order
		}
		entries[name] = cpioEntry{mode: mode, data: string(b[data : data+size]), rmaj: rmaj, rmin: rmin, mtime: mtime, nlink: nlink}
		order = append(order, name)
		off = align(data + size)
	}
}

func TestInitramfs(t *testing.T) {
	tree, err := OpenModuleTree(filepath.Join("testdata", "modules"))
	if err != nil {
		t.Fatal(err)
	}
	mods, err := tree.Resolve([]string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	gz, err := Initramfs([]byte("INIT"), mods)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Initramfs([]byte("INIT"), mods)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gz, again) {
		t.Error("Initramfs is not reproducible: two calls gave different bytes")
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := readCPIO(t, raw)
	for _, tc := range []struct {
		name string
		want cpioEntry
	}{
		{"init", cpioEntry{mode: 0o100755, data: "INIT", nlink: 1}},
		{"tmp", cpioEntry{mode: 0o041777, nlink: 2}},
		{"dev/console", cpioEntry{mode: 0o020600, rmaj: 5, rmin: 1, nlink: 1}},
		{"dev/ttyS0", cpioEntry{mode: 0o020660, rmaj: 4, rmin: 64, nlink: 1}},
		{"args", cpioEntry{mode: 0o120777, data: "init", nlink: 1}},
		{"httpd", cpioEntry{mode: 0o120777, data: "init", nlink: 1}},
		{"lib/modules/load", cpioEntry{mode: 0o100644, data: "c_d.ko\nb.ko\na.ko\n", nlink: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := entries[tc.name]
			if !ok {
				t.Fatalf("initramfs has no %s", tc.name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s = %+v, want %+v", tc.name, got, tc.want)
			}
		})
	}
	for _, p := range guestinit.ProgramNames() {
		if _, ok := entries[p]; !ok {
			t.Errorf("initramfs has no link for program %s", p)
		}
	}
	if m := entries["lib/modules/a.ko"]; len(m.data) < 4 || m.data[:4] != "\x7fELF" {
		t.Errorf("lib/modules/a.ko is not the module: %q", fmt.Sprintf("%.8q", m.data))
	}
}

func TestCPIOPadding(t *testing.T) {
	// Names and data of every length mod 4 must keep headers aligned.
	var buf bytes.Buffer
	c := newCPIOWriter(&buf, 42)
	want := map[string]string{}
	for i := range 8 {
		name := fmt.Sprintf("f%s", string(bytes.Repeat([]byte("x"), i)))
		data := string(bytes.Repeat([]byte("d"), i))
		c.File(name, 0o644, []byte(data))
		want[name] = data
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
	entries, _ := readCPIO(t, buf.Bytes())
	for name, data := range want {
		if e := entries[name]; e.data != data || e.mtime != 42 {
			t.Errorf("%s = %+v, want data %q mtime 42", name, e, data)
		}
	}
}
