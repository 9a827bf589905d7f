package vmimage

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/containerd/errdefs"
)

// SectorSize is the unit of a raw disk: its size is a whole number of these.
const SectorSize = 512

// HeadSize is how many leading bytes of a file ProbeDisk and ProbeKernel
// look at; fewer are fine for a shorter file.
const HeadSize = 4096

// DiskInfo is what a boot disk's header says about it.
type DiskInfo struct {
	// Format is FormatRaw or FormatQCOW2.
	Format string `json:"format"`
	// VirtualSize is the size of the disk the guest sees, in bytes: a raw
	// disk's file size, a qcow2 disk's header field.
	VirtualSize int64 `json:"virtualSize"`
}

// notDisk lists files that are easily mistaken for a disk image, by magic
// bytes at an offset, with what to do instead.
var notDisk = []struct {
	off  int
	mag  string
	what string
}{
	{0, "\x7fELF", "an ELF file (a kernel? pass it with --kernel)"},
	{0x202, "HdrS", "a Linux kernel image (pass it with --kernel)"},
	{0, "\x1f\x8b", "gzip-compressed (decompress it first, e.g. gunzip)"},
	{0, "\xfd7zXZ\x00", "xz-compressed (decompress it first, e.g. unxz)"},
	{0, "\x28\xb5\x2f\xfd", "zstd-compressed (decompress it first, e.g. unzstd)"},
	{0, "BZh", "bzip2-compressed (decompress it first, e.g. bunzip2)"},
	{0, "PK\x03\x04", "a zip archive"},
	{257, "ustar", "a tar archive"},
	{0, "KDMV", "a VMDK disk (convert it: qemu-img convert -O qcow2 IN OUT)"},
	{0x40, "\x7f\x10\xda\xbe", "a VirtualBox VDI disk (convert it: qemu-img convert -O qcow2 IN OUT)"},
	{0, "conectix", "a VHD disk (convert it: qemu-img convert -O qcow2 IN OUT)"},
	{0, "vhdxfile", "a VHDX disk (convert it: qemu-img convert -O qcow2 IN OUT)"},
}

// ProbeDisk tells what kind of boot disk a file of size bytes is from its
// first bytes (head, up to HeadSize of them): qcow2 by its magic, else raw.
// It returns an ErrInvalidArgument error saying what is wrong when the file
// is no disk image Feather can boot: empty, a raw disk that is not whole
// sectors, a broken, encrypted or backed qcow2, or a known other format
// (kernel, archive, another hypervisor's disk).
func ProbeDisk(head []byte, size int64) (DiskInfo, error) {
	invalid := func(format string, args ...any) (DiskInfo, error) {
		return DiskInfo{}, fmt.Errorf("not a disk image Feather can boot: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if size <= 0 {
		return invalid("the file is empty")
	}
	if bytes.HasPrefix(head, qcow2Magic) {
		return probeQCOW2(head, size)
	}
	for _, m := range notDisk {
		if len(head) >= m.off+len(m.mag) && string(head[m.off:m.off+len(m.mag)]) == m.mag {
			return invalid("it is %s", m.what)
		}
	}
	if size%SectorSize != 0 {
		return invalid("a raw disk is whole %d-byte sectors, this file is %d bytes", SectorSize, size)
	}
	return DiskInfo{Format: FormatRaw, VirtualSize: size}, nil
}

// The qcow2 header fields ProbeDisk reads (big-endian, see QEMU's
// docs/interop/qcow2.txt).
const (
	qcow2VersionOff     = 4
	qcow2BackingOff     = 8
	qcow2ClusterBitsOff = 20
	qcow2SizeOff        = 24
	qcow2CryptOff       = 32
	qcow2HeaderV2Len    = 72
)

func probeQCOW2(head []byte, size int64) (DiskInfo, error) {
	invalid := func(format string, args ...any) (DiskInfo, error) {
		return DiskInfo{}, fmt.Errorf("qcow2 disk: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if len(head) < qcow2HeaderV2Len || size < qcow2HeaderV2Len {
		return invalid("header truncated (%d bytes)", min(int64(len(head)), size))
	}
	be := binary.BigEndian
	if v := be.Uint32(head[qcow2VersionOff:]); v != 2 && v != 3 {
		return invalid("unknown version %d (want 2 or 3)", v)
	}
	if be.Uint64(head[qcow2BackingOff:]) != 0 {
		return invalid("it has a backing file, so it is not self-contained; flatten it: qemu-img convert -O qcow2 IN OUT")
	}
	if bits := be.Uint32(head[qcow2ClusterBitsOff:]); bits < 9 || bits > 21 {
		return invalid("cluster size 2^%d is out of range", bits)
	}
	if be.Uint32(head[qcow2CryptOff:]) != 0 {
		return invalid("it is encrypted; Feather boots unencrypted disks")
	}
	vsize := be.Uint64(head[qcow2SizeOff:])
	if vsize == 0 || vsize > 1<<62 {
		return invalid("virtual size %d is invalid", vsize)
	}
	return DiskInfo{Format: FormatQCOW2, VirtualSize: int64(vsize)}, nil
}

// Kernel formats ProbeKernel knows.
const (
	// KernelELF is an ELF executable, as OSv's loader-stripped.elf is.
	KernelELF = "elf"
	// KernelBzImage is a Linux boot-protocol image (bzImage, vmlinuz),
	// which QEMU's -kernel also boots.
	KernelBzImage = "bzImage"
)

// ProbeKernel tells a kernel's format from its first bytes, or returns an
// ErrInvalidArgument error when they are neither an ELF executable nor a
// Linux bzImage: QEMU's -kernel boots nothing else.
func ProbeKernel(head []byte) (string, error) {
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return KernelELF, nil
	case len(head) >= 0x206 && string(head[0x202:0x206]) == "HdrS":
		return KernelBzImage, nil
	case bytes.HasPrefix(head, qcow2Magic):
		return "", fmt.Errorf("not a kernel: it is a qcow2 disk (give the disk as the first argument): %w", errdefs.ErrInvalidArgument)
	}
	return "", fmt.Errorf("not a kernel QEMU can boot directly: neither an ELF executable (OSv's loader-stripped.elf) nor a Linux bzImage: %w", errdefs.ErrInvalidArgument)
}
