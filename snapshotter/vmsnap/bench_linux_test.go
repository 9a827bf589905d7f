package vmsnap

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/vmimage"
)

// BenchmarkInstanceDisk prepares 10 idle instances of a VM image whose
// disk is 64 MiB and 1 GiB, with this snapshotter (the instance disk made
// in each container's snapshot by Prepare) and, as the baseline in the same
// run, as the shim does without it (qemu-img create of an overlay over the
// unpacked disk, in its bundle). It prints the median time per instance and
// the disk each idle instance uses, beside the image's unpacked layer.
func BenchmarkInstanceDisk(b *testing.B) {
	qemuImg := prereq.Program(b, "qemu-img", "install Debian package qemu-utils")
	const instances = 10
	type row struct {
		base, path   string
		prepare      time.Duration
		perInstance  int64
		image, total int64
	}
	var rows []row
	for b.Loop() {
		rows = rows[:0]
		for _, size := range []int64{64 << 20, 1 << 30} {
			ctx, sn := newSnapshotter(b)
			root := filepath.Dir(filepath.Dir(filepath.Dir(upperOfB(b, ctx, sn))))
			top := commitDisk(b, ctx, sn, size)
			image := du(b, filepath.Join(root, "snapshots"))
			name := strconv.FormatInt(size>>20, 10) + " MiB"
			var feather, shim []time.Duration
			var featherUse, shimUse int64
			bundles := b.TempDir()
			base := ""
			for i := range instances {
				t0 := time.Now()
				mounts, err := sn.Prepare(ctx, "ctr"+strconv.Itoa(i), top)
				if err != nil {
					b.Fatal(err)
				}
				feather = append(feather, time.Since(t0))
				upper := upperOf(b, mounts)
				featherUse += du(b, upper)
				base = lowerDisk(b, mounts)

				overlay := filepath.Join(bundles, strconv.Itoa(i)+".qcow2")
				t0 = time.Now()
				if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, overlay).CombinedOutput(); err != nil {
					b.Fatalf("qemu-img create: %v: %s", err, out)
				}
				shim = append(shim, time.Since(t0))
				shimUse += du(b, overlay)
			}
			rows = append(rows,
				row{name, "feather snapshotter (Prepare)", median(feather), featherUse / instances, image, image + featherUse},
				row{name, "shim's own (qemu-img create)", median(shim), shimUse / instances, image, image + shimUse})
		}
	}
	fmt.Printf("\nVM instance disks: %d idle instances of one image (median per instance; disk as du counts it):\n", instances)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "base disk\tpath\tprepare\tper idle instance\timage layer\timage + 10 instances\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d KiB\t%.1f MiB\t%.1f MiB\t\n", r.base, r.path, r.prepare.Round(10*time.Microsecond),
			r.perInstance>>10, float64(r.image)/(1<<20), float64(r.total)/(1<<20))
	}
	tw.Flush()
}

// upperOfB prepares and removes a throwaway snapshot to learn where the
// snapshotter keeps its snapshots (ROOT/snapshots/N/fs).
func upperOfB(b *testing.B, ctx context.Context, sn *Snapshotter) string {
	b.Helper()
	mounts, err := sn.Prepare(ctx, "probe", "")
	if err != nil {
		b.Fatal(err)
	}
	up := upperOf(b, mounts)
	if err := sn.Remove(ctx, "probe"); err != nil {
		b.Fatal(err)
	}
	return up
}

// commitDisk commits an image layer holding a raw disk of size bytes,
// written (not sparse), and returns its name.
func commitDisk(b *testing.B, ctx context.Context, sn *Snapshotter, size int64) string {
	b.Helper()
	key := "extract-disk disk"
	mounts, err := sn.Prepare(ctx, key, "")
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(upperOf(b, mounts), vmimage.DiskPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0xd1}, 1<<20)
	for range size >> 20 {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := sn.Commit(ctx, "disk", key); err != nil {
		b.Fatal(err)
	}
	return "disk"
}

// lowerDisk returns the VM disk in the lower layer of an active snapshot's
// overlay mount.
func lowerDisk(b *testing.B, mounts []mount.Mount) string {
	b.Helper()
	for _, o := range mounts[0].Options {
		if len(o) > len("lowerdir=") && o[:len("lowerdir=")] == "lowerdir=" {
			return filepath.Join(o[len("lowerdir="):], vmimage.DiskPath)
		}
	}
	b.Fatalf("mounts %+v have no lowerdir", mounts)
	return ""
}

// du is the bytes allocated under path.
func du(b *testing.B, path string) int64 {
	b.Helper()
	var n int64
	err := filepath.Walk(path, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n += fi.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
