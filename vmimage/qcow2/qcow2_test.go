package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/internal/prereq"
)

func run(t *testing.T, ctx context.Context, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v: %s", name, args, err, out)
	}
}

// TestOpenChain builds backing chains with qemu-img — raw and qcow2 bases,
// compressed and plain clusters, a relative backing name, an overlay
// larger than its base, zeroed ranges — and checks that Open reads exactly
// what qemu-img convert flattens each to.
func TestOpenChain(t *testing.T) {
	prereq.Program(t, "qemu-img", "install Debian package qemu-utils")
	prereq.Program(t, "qemu-io", "install Debian package qemu-utils")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	base := make([]byte, 256<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range base {
		base[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, dir, "qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", "base.raw", "base.qcow2")
	for _, tc := range []struct {
		name  string
		steps [][]string
	}{
		{"raw base", [][]string{
			{"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.raw", "top.qcow2"},
			{"qemu-io", "-f", "qcow2", "-c", "write -q -P 0xab 70000 9000", "top.qcow2"},
		}},
		{"compressed qcow2 base, grown, zeroed", [][]string{
			{"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "top.qcow2"},
			{"qemu-img", "resize", "-q", "-f", "qcow2", "top.qcow2", "1M"},
			{"qemu-io", "-f", "qcow2", "-c", "write -q -z 4096 65536", "-c", "write -q -P 0x5a 300000 512", "top.qcow2"},
		}},
		{"three deep, 512-byte clusters", [][]string{
			{"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "mid.qcow2"},
			{"qemu-io", "-f", "qcow2", "-c", "write -q -P 0x11 0 100000", "mid.qcow2"},
			{"qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "-o", "cluster_size=512", "top.qcow2", "256K"},
			{"qemu-io", "-f", "qcow2", "-c", "write -q -P 0x22 50000 100", "top.qcow2"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.steps {
				run(t, ctx, dir, s[0], s[1:]...)
			}
			t.Cleanup(func() { os.Remove(filepath.Join(dir, "top.qcow2")); os.Remove(filepath.Join(dir, "mid.qcow2")) })
			run(t, ctx, dir, "qemu-img", "convert", "-q", "-O", "raw", "top.qcow2", "flat.raw")
			want, err := os.ReadFile(filepath.Join(dir, "flat.raw"))
			if err != nil {
				t.Fatal(err)
			}
			img, err := Open(filepath.Join(dir, "top.qcow2"))
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if img.Size() != int64(len(want)) {
				t.Fatalf("Size = %d, want %d", img.Size(), len(want))
			}
			got := make([]byte, len(want))
			if n, err := img.ReadAt(got, 0); n != len(want) || err != nil {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("byte %d reads %#x, qemu-img says %#x", i, got[i], want[i])
			}
			// Unaligned reads across clusters, and past the end.
			for _, off := range []int64{1, 4095, 65535, 299999, int64(len(want)) - 7, int64(len(want)) + 1} {
				p := make([]byte, 9000)
				n, err := img.ReadAt(p, off)
				if off >= int64(len(want)) {
					if n != 0 || err != io.EOF {
						t.Errorf("ReadAt past the end = %d, %v; want 0, EOF", n, err)
					}
					continue
				}
				end := min(off+9000, int64(len(want)))
				if int64(n) != end-off || (end < off+9000) != errors.Is(err, io.EOF) || !bytes.Equal(p[:n], want[off:end]) {
					t.Errorf("ReadAt(9000 at %d) = %d, %v", off, n, err)
				}
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestOpenInvalid(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	header := func(edit func(h []byte)) []byte {
		h := make([]byte, 512)
		copy(h, Magic)
		h[7] = 3     // version
		h[23] = 16   // cluster bits
		h[31] = 1    // virtual size
		h[103] = 104 // header length
		edit(h)
		return h
	}
	for _, tc := range []struct {
		name string
		file []byte
		err  error
		says string
	}{
		{"cluster size", header(func(h []byte) { h[23] = 30 }), errdefs.ErrInvalidArgument, "cluster size"},
		{"encrypted", header(func(h []byte) { h[35] = 1 }), errdefs.ErrInvalidArgument, "encrypted"},
		{"L1 outside", header(func(h []byte) { h[39] = 200; h[47] = 8 }), errdefs.ErrInvalidArgument, "L1 table"},
		{"backing name outside", header(func(h []byte) { h[15] = 200; h[16] = 9 }), errdefs.ErrInvalidArgument, "backing file name"},
		{"missing backing", header(func(h []byte) { h[15] = 200; h[19] = 4; copy(h[200:], "nope") }), os.ErrNotExist, "backing file"},
		{"extended L2", header(func(h []byte) { h[79] = 1 << 4 }), errdefs.ErrNotImplemented, "extended L2"},
		{"loop", nil, errdefs.ErrInvalidArgument, "deeper than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "self.qcow2")
			if tc.file == nil { // a file that is its own backing file
				tc.file = header(func(h []byte) { h[15] = 200; h[19] = 10; copy(h[200:], "self.qcow2") })
			}
			write("self.qcow2", tc.file)
			img, err := Open(p)
			if err == nil {
				img.Close()
			}
			if !errors.Is(err, tc.err) || !bytes.Contains([]byte(fmt.Sprint(err)), []byte(tc.says)) {
				t.Errorf("Open = %v, want %v saying %q", err, tc.err, tc.says)
			}
		})
	}
}
