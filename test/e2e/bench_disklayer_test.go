package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/image-spec/identity"

	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/flint/registry"
	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/test/harness"
	"github.com/feather-edge/feather/vmimage"
)

// BenchmarkDiskLayer pulls an image with a 1 GiB disk (incompressible
// bytes) from a local registry and unpacks it, in one run: as a tar layer
// (flint pack's default, gzip) for containerd's overlayfs snapshotter, and
// as a disk layer (--disk-layer=raw) for the feather snapshotter, whose
// differ links the blob into the snapshot. It prints the time of `ctr image
// pull`, the bytes containerd and the snapshotter wrote meanwhile
// (/proc/PID/io write_bytes), the disk the image then uses, and the disk the
// image plus 10 idle instances use (containers' snapshots, plus, on
// overlayfs, the qcow2 overlay the shim makes for each in its bundle), as
// du counts it, a hard-linked file once.
func BenchmarkDiskLayer(b *testing.B) {
	qemuImg := prereq.Program(b, "qemu-img", "install Debian package qemu-utils")
	env := harness.New(b)
	defer env.Close()
	sn := env.StartSnapshotter()
	ctrd := env.StartContainerd(harness.ContainerdOptions{Snapshotter: sn})
	reg := env.StartRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()

	dir := b.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	writeRandomDisk(b, disk, 1<<30)
	type variant struct {
		name, layer, snapshotter, ns string
		compression                  string
	}
	variants := []variant{
		{"tar layer (gzip), overlayfs", pack.DiskLayerTar, "overlayfs", "bench-tar", pack.CompressionGzip},
		{"disk layer (raw), feather", pack.DiskLayerRaw, harness.SnapshotterName, "bench-disk", ""},
	}
	refs := map[string]string{}
	for _, v := range variants {
		p, err := pack.Pack(ctx, pack.Options{Disk: disk, Cmd: "/hello", DiskLayer: v.layer, Compression: v.compression, TempDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		refs[v.ns] = reg.Host + "/feather/bench-disk:" + v.layer
		err = registry.Push(ctx, p.Image, refs[v.ns], registry.Options{PlainHTTP: true})
		p.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	os.Remove(disk)

	type row struct {
		name           string
		pull           time.Duration
		written, image int64
		withInstances  int64
		perInstance    int64
	}
	var rows []row
	cdRoot := filepath.Join(env.Dir, "containerd", "root")
	bundles := filepath.Join(dir, "bundles")
	os.MkdirAll(bundles, 0o755)
	used := func() int64 { return duUnique(b, cdRoot, sn.Root, bundles) }
	written := func() int64 { return writeBytes(b, ctrd.Pid()) + writeBytes(b, sn.Pid()) }
	for b.Loop() {
		for _, v := range variants {
			syscall.Sync()
			u0, w0 := used(), written()
			t0 := time.Now()
			if _, err := ctrd.Ctr(ctx, "-n", v.ns, "image", "pull", "--plain-http", "--snapshotter", v.snapshotter, refs[v.ns]); err != nil {
				b.Fatal(err)
			}
			pull := time.Since(t0)
			syscall.Sync()
			u1, w1 := used(), written()

			nsCtx := namespaces.WithNamespace(ctx, v.ns)
			img, err := ctrd.Client().GetImage(nsCtx, refs[v.ns])
			if err != nil {
				b.Fatal(err)
			}
			diffIDs, err := img.RootFS(nsCtx)
			if err != nil {
				b.Fatal(err)
			}
			parent := identity.ChainID(diffIDs).String()
			snaps := ctrd.Client().SnapshotService(v.snapshotter)
			for i := range 10 {
				mounts, err := snaps.Prepare(nsCtx, v.ns+"-instance-"+strconv.Itoa(i), parent)
				if err != nil {
					b.Fatal(err)
				}
				if v.snapshotter == harness.SnapshotterName {
					continue // the instance disk is in the snapshot
				}
				base := filepath.Join(lowerdir(b, mounts), vmimage.DiskPath)
				overlay := filepath.Join(bundles, v.ns+strconv.Itoa(i)+".qcow2")
				if out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, overlay).CombinedOutput(); err != nil {
					b.Fatalf("qemu-img create: %v: %s", err, out)
				}
			}
			syscall.Sync()
			u2 := used()
			rows = append(rows, row{v.name, pull, w1 - w0, u1 - u0, u2 - u0, (u2 - u1) / 10})
		}
	}
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Printf("\nPull + unpack of an image with a 1 GiB disk (incompressible), then 10 idle instances (disk as du counts it, hard links once):\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tpull + unpack\tbytes written\timage on disk\timage + 10 instances\tper idle instance\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d KiB\t\n", r.name, r.pull.Round(10*time.Millisecond), mib(r.written), mib(r.image), mib(r.withInstances), r.perInstance>>10)
	}
	tw.Flush()
}

// writeRandomDisk writes a raw disk of size bytes of pseudo-random
// (incompressible) bytes with a boot signature.
func writeRandomDisk(b *testing.B, path string, size int64) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		r.Read(buf)
		if off == 0 {
			buf[510], buf[511] = 0x55, 0xaa
		}
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// duUnique is the bytes allocated under dirs, each inode counted once.
func duUnique(b *testing.B, dirs ...string) int64 {
	b.Helper()
	seen := map[[2]uint64]bool{}
	var n int64
	for _, d := range dirs {
		err := filepath.Walk(d, func(_ string, fi os.FileInfo, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			k := [2]uint64{st.Dev, st.Ino}
			if !seen[k] {
				seen[k] = true
				n += st.Blocks * 512
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// writeBytes is what process pid has caused to be written to storage
// (write_bytes of /proc/PID/io).
func writeBytes(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("/proc/%d/io has no write_bytes", pid)
	return 0
}

// lowerdir returns the (one) lower directory of an active snapshot's
// overlay mount.
func lowerdir(b *testing.B, mounts []mount.Mount) string {
	b.Helper()
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return strings.Split(v, ":")[0]
		}
	}
	b.Fatalf("mounts %+v have no lowerdir", mounts)
	return ""
}
