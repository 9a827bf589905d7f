package rofs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/shim-osv/qemu"
)

// cmdlineOffset is where OSv's boot disk keeps its command line.
const cmdlineOffset = 512

// virtiofsd is QEMU 7.2's C virtio-fs daemon (Debian's qemu-system-common).
const virtiofsd = "/usr/lib/qemu/virtiofsd"

// realOSv returns the real OSv v0.57.0's kernel and boot disk, and a fresh
// instance disk over the boot disk, skipping (or failing, under
// FEATHER_E2E=required) without them or QEMU.
func realOSv(t *testing.T, ctx context.Context) (kernel, base, disk string) {
	t.Helper()
	dir := prereq.OSv(t, "v0.57.0")
	prereq.Program(t, qemu.System, "install Debian package qemu-system-x86")
	kernel, base = filepath.Join(dir, "loader-stripped.elf"), filepath.Join(dir, "usr.img")
	return kernel, base, overlay(t, ctx, base, "qcow2")
}

// boot direct-boots OSv's kernel with cmdline from disk under TCG — or,
// with no kernel, boots the disk itself with cmdline written into it — with
// extra QEMU arguments, and returns its console once OSv has powered off.
// QEMU is killed and reaped when the test ends, whatever happened.
func boot(t *testing.T, ctx context.Context, kernel, disk, cmdline string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	args := []string{
		"-machine", "q35,accel=tcg", "-m", "128M", "-nographic", "-nodefaults", "-no-user-config", "-serial", "stdio",
		"-drive", "file=" + disk + ",if=none,id=hd0,format=qcow2", "-device", "virtio-blk-pci,drive=hd0",
	}
	if kernel != "" {
		args = append(args, "-kernel", kernel, "-append", cmdline)
	} else if err := qemu.WriteAt(ctx, disk, cmdlineOffset, append([]byte(cmdline), 0)); err != nil {
		t.Fatal(err)
	}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, qemu.System, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("qemu (%s): %v; console:\n%s", cmdline, err, out.String())
	}
	return strings.ReplaceAll(out.String(), "\r\n", "\n")
}

// share starts virtiofsd on dir behind a socket it is handed (no pid file
// under /run/virtiofsd), and returns QEMU's arguments for it as tag t0.
// virtiofsd exits when its VM does; it is killed and reaped at the test's
// end in any case.
func share(t *testing.T, dir string) []string {
	t.Helper()
	prereq.Check(t, fileExists(virtiofsd), virtiofsd+" not found (Debian package qemu-system-common)")
	sock := filepath.Join(t.TempDir(), "fs.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false) // QEMU connects to it after this returns
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(virtiofsd, "--fd=3", "-o", "source="+dir, "-o", "sandbox=chroot")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("virtiofsd: %s", log.String())
		}
	})
	return []string{
		"-chardev", "socket,id=c0,path=" + sock,
		"-device", "vhost-user-fs-pci,queue-size=1024,chardev=c0,tag=t0",
		"-object", "memory-backend-file,id=mem,size=128M,mem-path=/dev/shm,share=on",
		"-numa", "node,memdev=mem",
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestRealOSv adds mount points to an instance disk of the real OSv
// v0.57.0's boot disk and boots it: /ls shows them and the image's files
// intact, a virtio-fs share mounts at one of them, and the boot disk is
// unchanged.
func TestRealOSv(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kernel, base, disk := realOSv(t, ctx)
	baseSum := sum(t, base)

	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "token"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	const withShare = "--rootfs=rofs --mount-fs=virtiofs,/dev/virtiofs0,/config /ls /config"
	// The control: without the mount point, OSv cannot mount the share.
	if console := boot(t, ctx, kernel, disk, withShare, share(t, src)...); strings.Contains(console, "/config/token") || !strings.Contains(console, "/config: error") {
		t.Errorf("before EnsureDirs, OSv showed /config; console:\n%s", console)
	}

	dirs := []string{"/config", "/var/run/secrets/kubernetes.io/serviceaccount", "/data/sub"}
	start := time.Now()
	added, err := EnsureDirs(ctx, disk, dirs)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("EnsureDirs on usr.img: %v, added %q", took, added)
	if len(added) != 7 {
		t.Errorf("added %q: want the 7 directories of %q", added, dirs)
	}

	// The file as the image was built from it (../shared/osv/apps).
	text, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(kernel)), "apps", "feather-test.txt"))
	if err != nil {
		t.Fatal(err)
	}
	console := boot(t, ctx, kernel, disk, "--rootfs=rofs /ls /config /var/run /data /etc/feather-test.txt")
	for _, want := range []string{
		"/config/ dir",
		"/var/run/ dir",
		"/var/run/secrets/ dir",
		"/var/run/secrets/kubernetes.io/ dir",
		"/var/run/secrets/kubernetes.io/serviceaccount/ dir",
		"/data/ dir",
		"/data/.keep file 0 bytes",
		"/data/sub/ dir",
		fmt.Sprintf("/etc/feather-test.txt file %d bytes", len(text)),
		"/etc/feather-test.txt content: " + string(text),
	} {
		if !strings.Contains(console, want) {
			t.Errorf("/ls did not print %q", want)
		}
	}
	if strings.Contains(console, ": error") {
		t.Errorf("/ls printed an error")
	}
	t.Logf("console:\n%s", console)

	// A virtio-fs share mounts at the new /config.
	console = boot(t, ctx, kernel, disk, withShare, share(t, src)...)
	if !strings.Contains(console, "/config/token content: from the host") || strings.Contains(console, "failed to create missing mount point") {
		t.Errorf("the share at /config is not listed")
	}
	t.Logf("console with the share:\n%s", console)

	// Booted from the disk itself (OSv's boot loader, not -kernel), too.
	console = boot(t, ctx, "", disk, "--rootfs=rofs /ls /var/run/secrets/kubernetes.io /data")
	for _, want := range []string{"/var/run/secrets/kubernetes.io/serviceaccount/ dir", "/data/sub/ dir", "/data/.keep file 0 bytes"} {
		if !strings.Contains(console, want) {
			t.Errorf("disk boot: /ls did not print %q", want)
		}
	}
	t.Logf("console of the disk boot:\n%s", console)

	if sum(t, base) != baseSum {
		t.Error("usr.img was written")
	}
}

// TestRealOSvErrors checks the errors a pod would see with the real boot
// disk: a mountPath under one of its files, and a disk that is not OSv's.
func TestRealOSvErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, disk := realOSv(t, ctx)
	before := sum(t, disk)
	_, err := EnsureDirs(ctx, disk, []string{"/config", "/etc/feather-test.txt/x"})
	const msg = "mountPath /etc/feather-test.txt/x: /etc/feather-test.txt is a file in the image"
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), msg) {
		t.Errorf("err = %v, want ErrInvalidArgument saying %q", err, msg)
	}
	if sum(t, disk) != before {
		t.Error("the instance disk was written on error")
	}

	// A blank disk has no partition table, so no ROFS root.
	dir := t.TempDir()
	raw := filepath.Join(dir, "not-osv.raw")
	if err := runCmd(ctx, "qemu-img", "create", "-q", "-f", "raw", raw, "1M"); err != nil {
		t.Fatal(err)
	}
	_, err = EnsureDirs(ctx, overlay(t, ctx, raw, "raw"), []string{"/config"})
	if !errors.Is(err, ErrNotROFS) || !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("err = %v, want ErrNotROFS", err)
	}
}

// BenchmarkEnsureDirs prints the time EnsureDirs takes on the real OSv
// boot disk for a pod's usual mount points, beside making the overlay it
// edits, median of runs.
func BenchmarkEnsureDirs(b *testing.B) {
	dir := prereq.OSv(b, "v0.57.0")
	prereq.Program(b, "qemu-io", "install Debian package qemu-utils")
	base := filepath.Join(dir, "usr.img")
	ctx := context.Background()
	const runs = 11
	var mk, ensure []time.Duration
	for b.Loop() {
		for i := range runs {
			p := filepath.Join(b.TempDir(), fmt.Sprintf("%d.qcow2", i))
			t0 := time.Now()
			if err := qemu.CreateOverlay(ctx, base, "qcow2", p); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, err := EnsureDirs(ctx, p, []string{"/config", "/var/run/secrets/kubernetes.io/serviceaccount"}); err != nil {
				b.Fatal(err)
			}
			mk, ensure = append(mk, t1.Sub(t0)), append(ensure, time.Since(t1))
		}
	}
	fmt.Printf("\nEnsureDirs on OSv v0.57.0 usr.img (%d runs, median)\n", len(mk))
	fmt.Printf("  qemu.CreateOverlay (baseline)  %v\n", median(mk))
	fmt.Printf("  EnsureDirs, 6 directories      %v\n", median(ensure))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
