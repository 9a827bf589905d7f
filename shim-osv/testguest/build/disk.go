package build

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The boot disk's layout: an MBR with syslinux's boot code in sector 0,
// sectors 1…2047 left zero (OSv's command line goes at byte 512; the shim
// writes it into a per-instance overlay), and one FAT partition from sector
// 2048 holding syslinux, the kernel and the initramfs.
const (
	sectorSize  = 512
	partStart   = 2048 // sectors
	partTypeFAT = 0x0e // FAT16, LBA
	diskSig     = 0x46454154
)

// KernelArgs are the kernel command line of the disk boot: the token that
// tells init to read the OSv command line from the disk.
const KernelArgs = "feather.cmdline=disk quiet"

// syslinuxCfg boots the kernel at once, silently: nothing but the guest's
// programs may write to the serial console.
const syslinuxCfg = `DEFAULT feather
PROMPT 0
TIMEOUT 0
LABEL feather
  LINUX /vmlinuz
  INITRD /initrd
  APPEND ` + KernelArgs + `
`

// DefaultMBR is Debian syslinux-common's MBR boot code.
const DefaultMBR = "/usr/lib/syslinux/mbr/mbr.bin"

// diskTools are the programs BootDisk runs and their Debian packages.
var diskTools = [][2]string{
	{"mkfs.fat", "dosfstools"}, {"mcopy", "mtools"}, {"syslinux", "syslinux"}, {"qemu-img", "qemu-utils"},
}

// BootDisk writes to out a qcow2 disk that SeaBIOS boots with syslinux into
// kernel and initrd with KernelArgs. It works in dir and needs no loop
// mounts: mkfs.fat, mcopy and syslinux work on the partition image file.
func BootDisk(ctx context.Context, dir, mbrPath string, kernel, initrd []byte, out string) error {
	for _, t := range diskTools {
		if _, err := exec.LookPath(t[0]); err != nil {
			return fmt.Errorf("%s not found (Debian package %s); fix: make deps", t[0], t[1])
		}
	}
	mbr, err := os.ReadFile(mbrPath)
	if err != nil {
		return fmt.Errorf("read MBR boot code: %w (Debian package syslinux-common; fix: make deps)", err)
	}
	if len(mbr) > 440 {
		return fmt.Errorf("MBR boot code %s is %d bytes, want at most 440", mbrPath, len(mbr))
	}
	files := map[string][]byte{"vmlinuz": kernel, "initrd": initrd, "syslinux.cfg": []byte(syslinuxCfg)}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		if err := os.Chtimes(p, time.Unix(0, 0), time.Unix(0, 0)); err != nil {
			return err
		}
	}

	// The partition: room for the files, syslinux and FAT overhead.
	const mib = 1 << 20
	partBytes := (int64(len(kernel)+len(initrd))*11/10 + 2*mib + mib - 1) / mib * mib
	part := filepath.Join(dir, "part.img")
	env := append(os.Environ(), "SOURCE_DATE_EPOCH=0", "MTOOLS_SKIP_CHECK=1")
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(b))
		}
		return nil
	}
	steps := [][]string{
		// Hidden sectors = partStart, so that the boot sector finds
		// itself; --invariant and a fixed volume ID for reproducibility.
		{"mkfs.fat", "--invariant", "-i", fmt.Sprintf("%08x", diskSig), "-n", "FEATHER", "-h", fmt.Sprint(partStart),
			"-C", part, fmt.Sprint(partBytes / 1024)},
		{"mcopy", "-m", "-i", part, "vmlinuz", "initrd", "syslinux.cfg", "::/"},
		{"syslinux", "--install", part},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return fmt.Errorf("make boot partition: %w", err)
		}
	}

	raw := filepath.Join(dir, "disk.raw")
	if err := assemble(raw, mbr, part, partBytes/sectorSize); err != nil {
		return fmt.Errorf("assemble boot disk: %w", err)
	}
	if err := run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out); err != nil {
		return fmt.Errorf("convert boot disk to qcow2: %w", err)
	}
	return nil
}

// assemble writes the raw disk: MBR, the gap, the partition.
func assemble(raw string, bootCode []byte, part string, partSectors int64) error {
	f, err := os.Create(raw)
	if err != nil {
		return err
	}
	p, err := os.Open(part)
	if err != nil {
		f.Close()
		return err
	}
	defer p.Close()
	mbr := MBR(bootCode, partStart, uint32(partSectors))
	_, err = f.Write(mbr)
	if err == nil {
		_, err = f.Seek(partStart*sectorSize, io.SeekStart)
	}
	if err == nil {
		_, err = io.Copy(f, p)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// MBR returns a master boot record: boot code, a fixed disk signature and
// one active partition of type FAT16 (LBA) from start for sectors sectors.
func MBR(bootCode []byte, start, sectors uint32) []byte {
	b := make([]byte, sectorSize)
	copy(b, bootCode)
	binary.LittleEndian.PutUint32(b[440:], diskSig)
	e := b[446:462]
	e[0] = 0x80 // active
	// CHS fields: "use LBA" (1023/254/63), as partitioning tools write
	// for partitions they cannot address by CHS.
	copy(e[1:4], []byte{0xfe, 0xff, 0xff})
	e[4] = partTypeFAT
	copy(e[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], sectors)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// errNoKernel is returned when the kernel tree holds no vmlinuz.
var errNoKernel = errors.New("no boot/vmlinuz-* in the kernel tree")
