// Package disk reads the unikernel disk images Flint packs: their format and
// virtual size (through vmimage, the image format's one definition), and
// the guest's view of their first sectors — the boot sector and the OSv
// command line at byte 512 — for raw and qcow2 disks alike, with no QEMU
// tools.
package disk

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/osv"
	"github.com/feather-edge/feather/vmimage"
)

// Disk is an open disk image file.
type Disk struct {
	vmimage.DiskInfo
	// Path is the file's path; Size its length in bytes.
	Path string
	Size int64

	f     *os.File
	qcow2 *qcow2
	// unreadable says why the guest's bytes cannot be read (a qcow2
	// feature this reader lacks); the header facts are still good.
	unreadable error
}

// Open opens the disk image at path and reads its header. A file that is
// no disk image gives an ErrInvalidArgument error saying why.
func Open(path string) (*Disk, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("disk image: %w", err)
	}
	d, err := open(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	d.Path = path
	return d, nil
}

func open(f *os.File) (*Disk, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file: %w", errdefs.ErrInvalidArgument)
	}
	head := make([]byte, vmimage.HeadSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	info, err := vmimage.ProbeDisk(head[:n], fi.Size())
	if err != nil {
		return nil, err
	}
	d := &Disk{DiskInfo: info, Size: fi.Size(), f: f}
	if info.Format == vmimage.FormatQCOW2 {
		d.qcow2, err = openQCOW2(f, head[:n], fi.Size())
		if errdefs.IsNotImplemented(err) {
			d.unreadable, err = err, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// File returns the open file, positioned nowhere in particular: read it
// with ReadAt or through io.NewSectionReader.
func (d *Disk) File() *os.File { return d.f }

// Close closes the file.
func (d *Disk) Close() error { return d.f.Close() }

// ReadAt reads the guest's bytes at guest offset off: what the VM sees on
// the disk, whatever the file format. Unallocated qcow2 clusters read as
// zeros. A qcow2 disk using a feature this reader lacks (zstd clusters,
// extended L2 entries) gives an ErrNotImplemented error.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if d.unreadable != nil {
		return 0, d.unreadable
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset: %w", errdefs.ErrInvalidArgument)
	}
	if off >= d.VirtualSize {
		return 0, io.EOF
	}
	want := len(p)
	if rem := d.VirtualSize - off; int64(want) > rem {
		p = p[:rem]
	}
	var n int
	var err error
	if d.qcow2 == nil {
		n, err = d.f.ReadAt(p, off)
	} else {
		n, err = d.qcow2.readAt(p, off)
	}
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

// Bootable reports whether the guest's first sector ends in the boot
// signature 0x55 0xAA, as a BIOS boot disk's does.
func (d *Disk) Bootable() (bool, error) {
	mbr := make([]byte, 512)
	if _, err := d.ReadAt(mbr, 0); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return mbr[510] == 0x55 && mbr[511] == 0xaa, nil
}

// Cmdline returns the OSv command line stored on the disk at
// osv.CmdlineOffset, "" when there is none (the area is zeros).
func (d *Disk) Cmdline() (string, error) {
	buf := make([]byte, osv.MaxDisk+1)
	n, err := d.ReadAt(buf, osv.CmdlineOffset)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the command line at byte %d: %w", osv.CmdlineOffset, err)
	}
	buf = buf[:n]
	end := bytes.IndexByte(buf, 0)
	if end < 0 {
		return "", fmt.Errorf("no NUL-terminated OSv command line at byte %d (is this an OSv disk?): %w", osv.CmdlineOffset, errdefs.ErrInvalidArgument)
	}
	return string(buf[:end]), nil
}

// qcow2 maps guest offsets to a qcow2 file's clusters (see QEMU's
// docs/interop/qcow2.txt): L1 table → L2 tables → data clusters, each
// plain or deflate-compressed. That is all a read needs; snapshots,
// refcounts and dirty bitmaps are never consulted.
type qcow2 struct {
	f           io.ReaderAt
	fileSize    int64
	clusterBits uint32
	l1          []uint64
}

// Header fields and entry bits.
const (
	qcowL1SizeOff        = 36
	qcowL1TableOff       = 40
	qcowIncompatOff      = 72
	qcowCompressionOff   = 104
	qcowIncompatCompress = 1 << 3 // compression type field present
	qcowIncompatExtL2    = 1 << 4 // extended L2 entries
	qcowOffsetMask       = 0x00fffffffffffe00
	qcowCompressed       = 1 << 62
	qcowZeroFlag         = 1
)

func openQCOW2(f io.ReaderAt, head []byte, fileSize int64) (*qcow2, error) {
	be := binary.BigEndian
	q := &qcow2{f: f, fileSize: fileSize, clusterBits: be.Uint32(head[20:])}
	if be.Uint32(head[4:]) >= 3 {
		if len(head) < qcowCompressionOff+1 {
			return nil, fmt.Errorf("qcow2 header truncated: %w", errdefs.ErrInvalidArgument)
		}
		incompat := be.Uint64(head[qcowIncompatOff:])
		if incompat&qcowIncompatExtL2 != 0 {
			return nil, fmt.Errorf("reading a qcow2 disk with extended L2 entries is not supported (rewrite it: qemu-img convert -O qcow2 IN OUT): %w", errdefs.ErrNotImplemented)
		}
		if incompat&qcowIncompatCompress != 0 && head[qcowCompressionOff] != 0 {
			return nil, fmt.Errorf("reading a qcow2 disk with zstd-compressed clusters is not supported (rewrite it: qemu-img convert -O qcow2 IN OUT): %w", errdefs.ErrNotImplemented)
		}
	}
	l1Size := int64(be.Uint32(head[qcowL1SizeOff:]))
	l1Off := int64(be.Uint64(head[qcowL1TableOff:]))
	if l1Size*8 > fileSize || l1Off < 0 || l1Off+l1Size*8 > fileSize {
		return nil, fmt.Errorf("qcow2 L1 table (%d entries at %d) lies outside the %d-byte file: %w", l1Size, l1Off, fileSize, errdefs.ErrInvalidArgument)
	}
	raw := make([]byte, l1Size*8)
	if _, err := f.ReadAt(raw, l1Off); err != nil {
		return nil, fmt.Errorf("read qcow2 L1 table: %w", err)
	}
	q.l1 = make([]uint64, l1Size)
	for i := range q.l1 {
		q.l1[i] = be.Uint64(raw[i*8:])
	}
	return q, nil
}

func (q *qcow2) clusterSize() int64 { return 1 << q.clusterBits }

// readAt fills p from guest offset off, one cluster at a time.
func (q *qcow2) readAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		cluster, err := q.cluster(off + int64(n))
		if err != nil {
			return n, err
		}
		in := (off + int64(n)) % q.clusterSize()
		n += copy(p[n:], cluster[in:])
	}
	return n, nil
}

// cluster returns the guest cluster holding guest offset off.
func (q *qcow2) cluster(off int64) ([]byte, error) {
	cs := q.clusterSize()
	l2Entries := cs / 8
	l1i := off / cs / l2Entries
	l2i := off / cs % l2Entries
	out := make([]byte, cs)
	if l1i >= int64(len(q.l1)) {
		return out, nil
	}
	l2Off := int64(q.l1[l1i] & qcowOffsetMask)
	if l2Off == 0 {
		return out, nil
	}
	var e [8]byte
	if _, err := q.f.ReadAt(e[:], l2Off+l2i*8); err != nil {
		return nil, fmt.Errorf("read qcow2 L2 entry: %w", err)
	}
	entry := binary.BigEndian.Uint64(e[:])
	if entry&qcowCompressed != 0 {
		return q.compressed(entry, out)
	}
	host := int64(entry & qcowOffsetMask)
	if host == 0 || entry&qcowZeroFlag != 0 {
		return out, nil
	}
	n, err := q.f.ReadAt(out, host)
	if err != nil && !(errors.Is(err, io.EOF) && host+int64(n) == q.fileSize) {
		return nil, fmt.Errorf("read qcow2 cluster at %d: %w", host, err)
	}
	return out, nil
}

// compressed inflates a compressed cluster into out. Its L2 entry holds
// the host offset in its low 62-(clusterBits-8) bits and, above them, the
// number of extra 512-byte sectors the compressed data may span.
func (q *qcow2) compressed(entry uint64, out []byte) ([]byte, error) {
	x := 62 - (q.clusterBits - 8)
	host := int64(entry & (1<<x - 1))
	sectors := int64((entry>>x)&(1<<(q.clusterBits-8)-1)) + 1
	size := sectors*512 - host%512
	size = min(size, q.fileSize-host)
	if host <= 0 || size <= 0 {
		return nil, fmt.Errorf("qcow2 compressed cluster at %d lies outside the file: %w", host, errdefs.ErrInvalidArgument)
	}
	zr := flate.NewReader(io.NewSectionReader(q.f, host, size))
	defer zr.Close()
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, fmt.Errorf("inflate qcow2 cluster at %d: %w", host, err)
	}
	return out, nil
}
