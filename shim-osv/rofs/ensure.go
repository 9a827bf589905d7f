package rofs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/feather-edge/feather/shim-osv/qemu"
	"github.com/feather-edge/feather/vmimage/qcow2"
)

// ErrNotROFS says a disk has no ROFS root partition EnsureDirs can edit
// (a ZFS root, a disk that is not OSv's, an unknown ROFS version): the
// caller falls back to requiring that mount points exist in the image. It
// wraps errdefs.ErrNotImplemented.
var ErrNotROFS = fmt.Errorf("no OSv ROFS root partition to add mount points to: %w", errdefs.ErrNotImplemented)

// The MBR partition table, as OSv reads it (fs/vfs/kern_physio.cc): four
// 16-byte entries from byte 446, then the signature 0x55 0xAA. OSv mounts
// its ROFS root from /dev/vblk0.1, the second entry.
const (
	mbrTable       = 446
	mbrEntrySize   = 16
	rootPartition  = 1
	partEndCHS     = 5
	partStartLBA   = 8
	partSectors    = 12
	maxStructBytes = 64 << 20
)

// EnsureDirs makes every directory of dirs (absolute clean paths of mount
// points), and its parents, exist in the ROFS root partition of the qcow2
// overlay, and returns the paths it added, parents first; those that exist
// are left alone, so a second call adds nothing and writes nothing. Only the
// overlay is written, never its backing file; the overlay must not be in use
// by a running VM.
//
// It reads the partition table, the superblock and the structure info
// (through the overlay's backing chain, in Go), writes a new structure info
// after the old one's end, grows the partition (and the overlay's virtual
// size) to hold it, and writes the superblock last: time and space grow
// with the number of files in the image, not with its size.
//
// A component of a path that is a regular file or a symlink in the image
// gives an ErrInvalidArgument error naming it; a disk without a ROFS root
// an error wrapping ErrNotROFS; a disk whose qcow2 features the Go reader
// lacks (zstd-compressed clusters, extended L2 entries) an ErrNotImplemented
// error that is not ErrNotROFS. It is not safe to run concurrently with any
// other writer of the overlay.
func EnsureDirs(ctx context.Context, overlay string, dirs []string) (added []string, err error) {
	for _, d := range dirs {
		if err := CheckPath(d); err != nil {
			return nil, err
		}
	}
	r, err := openOverlay(overlay)
	if err != nil {
		return nil, err
	}
	root, err := readRoot(r)
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", overlay, err)
	}
	for _, d := range dirs {
		a, err := root.fs.MkdirAll(d)
		if err != nil {
			return nil, err
		}
		added = append(added, a...)
	}
	if len(added) == 0 {
		return nil, nil
	}
	extents, size, err := root.update()
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", overlay, err)
	}
	if size <= root.diskSize {
		size = 0 // no need to grow
	}
	if err := qemu.Write(ctx, overlay, size, extents); err != nil {
		return nil, fmt.Errorf("add mount points to the disk: %w", err)
	}
	log.G(ctx).WithField("disk", overlay).WithField("added", added).Debug("added mount points to the ROFS root")
	return added, nil
}

// openOverlay opens the qcow2 overlay with its backing chain.
func openOverlay(overlay string) (*qcow2.Image, error) {
	f, err := os.Open(overlay)
	if err != nil {
		return nil, fmt.Errorf("instance disk: %w", err)
	}
	magic := make([]byte, len(qcow2.Magic))
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil || !bytes.Equal(magic, qcow2.Magic) {
		return nil, fmt.Errorf("instance disk %s is not a qcow2 overlay: %w", overlay, errdefs.ErrInvalidArgument)
	}
	return qcow2.Open(overlay)
}

// rootFS is a disk's ROFS root partition as read.
type rootFS struct {
	diskSize    int64
	mbr         []byte
	start, size uint64 // the partition, in sectors
	block0      []byte
	sb          Superblock
	fs          *FS
}

// readRoot reads the partition table, the ROFS superblock and structure
// info of the disk r.
func readRoot(r *qcow2.Image) (*rootFS, error) {
	root := &rootFS{diskSize: r.Size(), mbr: make([]byte, BlockSize), block0: make([]byte, BlockSize)}
	if err := readFull(r, root.mbr, 0); err != nil {
		return nil, fmt.Errorf("read the partition table: %w", err)
	}
	if root.mbr[510] != 0x55 || root.mbr[511] != 0xaa {
		return nil, fmt.Errorf("no partition table: %w", ErrNotROFS)
	}
	le := binary.LittleEndian
	e := root.mbr[mbrTable+rootPartition*mbrEntrySize:]
	root.start, root.size = uint64(le.Uint32(e[partStartLBA:])), uint64(le.Uint32(e[partSectors:]))
	if root.size == 0 {
		return nil, fmt.Errorf("no second partition, where OSv keeps its root: %w", ErrNotROFS)
	}
	if err := readFull(r, root.block0, int64(root.start)*BlockSize); err != nil {
		return nil, fmt.Errorf("read the root partition's superblock: %w", err)
	}
	sb := DecodeSuperblock(root.block0)
	switch {
	case sb.Magic != Magic:
		return nil, fmt.Errorf("the root partition is not ROFS (a ZFS root?): %w", ErrNotROFS)
	case sb.Version != Version:
		return nil, fmt.Errorf("ROFS version %d (want %d): %w", sb.Version, Version, ErrNotROFS)
	case sb.BlockSize != BlockSize:
		return nil, fmt.Errorf("ROFS block size %d (want %d): %w", sb.BlockSize, BlockSize, ErrNotROFS)
	case sb.StructFirst == 0 || sb.StructBlocks > maxStructBytes/BlockSize || sb.StructFirst > root.size || sb.StructBlocks > root.size-sb.StructFirst:
		return nil, fmt.Errorf("ROFS structure info (%d blocks from %d) lies outside its %d-block partition: %w", sb.StructBlocks, sb.StructFirst, root.size, errdefs.ErrInvalidArgument)
	}
	root.sb = sb
	b := make([]byte, sb.StructBlocks*BlockSize)
	if err := readFull(r, b, int64(root.start+sb.StructFirst)*BlockSize); err != nil {
		return nil, fmt.Errorf("read the ROFS structure info: %w", err)
	}
	var err error
	root.fs, err = Decode(sb, b)
	return root, err
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("%d bytes at %d: past the end of the disk: %w", len(p), off, errdefs.ErrInvalidArgument)
	}
	return err
}

// update encodes the changed structure info and returns what to write —
// the structure, after both the old one and every file's data; the
// partition table, if the partition must grow; the superblock, last, so
// that until it lands the disk holds the old filesystem whole — and the
// disk size that needs.
func (root *rootFS) update() ([]qemu.Extent, int64, error) {
	b, sb, err := root.fs.Encode()
	if err != nil {
		return nil, 0, err
	}
	first := root.sb.StructFirst + root.sb.StructBlocks
	for _, in := range root.fs.Inodes {
		if in.IsRegular() {
			first = max(first, in.Offset+(in.Count+BlockSize-1)/BlockSize)
		}
	}
	sb.StructFirst = first
	sb.StructBlocks = (uint64(len(b)) + BlockSize - 1) / BlockSize
	b = append(b, make([]byte, sb.StructBlocks*BlockSize-uint64(len(b)))...)
	extents := []qemu.Extent{{Offset: int64(root.start+first) * BlockSize, Data: b}}

	end := first + sb.StructBlocks // in blocks, from the partition's start
	if end > root.size {
		if err := root.grow(end); err != nil {
			return nil, 0, err
		}
		extents = append(extents, qemu.Extent{Offset: 0, Data: root.mbr})
	}
	block0 := bytes.Clone(root.block0)
	sb.Encode(block0)
	extents = append(extents, qemu.Extent{Offset: int64(root.start) * BlockSize, Data: block0})
	return extents, int64(root.start+max(end, root.size)) * BlockSize, nil
}

// grow sets the root partition's size in the partition table to sectors,
// refusing when that would overlap another partition.
func (root *rootFS) grow(sectors uint64) error {
	le := binary.LittleEndian
	if root.start+sectors > 1<<32-1 {
		return fmt.Errorf("the root partition cannot grow past 2 TiB (MBR): %w", errdefs.ErrNotImplemented)
	}
	for i := range 4 {
		e := root.mbr[mbrTable+i*mbrEntrySize:]
		start, size := uint64(le.Uint32(e[partStartLBA:])), uint64(le.Uint32(e[partSectors:]))
		if i != rootPartition && size > 0 && start < root.start+sectors && start+size > root.start {
			return fmt.Errorf("the root partition cannot grow by %d sectors for mount points: partition %d follows it: %w", sectors-root.size, i+1, errdefs.ErrFailedPrecondition)
		}
	}
	e := root.mbr[mbrTable+rootPartition*mbrEntrySize:]
	le.PutUint32(e[partSectors:], uint32(sectors))
	c, h, s := chs(root.start + sectors)
	e[partEndCHS] = byte(h)
	le.PutUint16(e[partEndCHS+1:], uint16(c<<6|s))
	root.size = sectors
	return nil
}

// chs converts a sector number to the cylinder, head and sector an MBR
// entry records, on the geometry OSv's imgedit.py uses (63 sectors, 255
// heads), as it encodes them: what BIOSes ignore on disks this large anyway.
func chs(lba uint64) (c, h, s uint64) {
	const sectors, heads = 63, 255
	c, h, s = lba/sectors/heads, lba/sectors%heads, lba%sectors+1
	if c > 1023 {
		c, h, s = 1023, 254, 63
	}
	return c, h, s
}
