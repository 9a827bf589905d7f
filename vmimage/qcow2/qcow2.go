// Package qcow2 reads the guest's bytes of a qcow2 disk image (QEMU's
// docs/interop/qcow2.txt) without QEMU's tools: L1 table → L2 tables → data
// clusters, each plain or deflate-compressed, and, for a cluster the image
// does not hold, its backing file's bytes. That is all a read needs;
// snapshots, refcounts and dirty bitmaps are never consulted. The one thing
// it writes is an empty overlay over a backing file (CreateOverlay).
package qcow2

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// Magic starts every qcow2 file.
var Magic = []byte("QFI\xfb")

// Header fields and entry bits.
const (
	versionOff         = 4
	backingOff         = 8
	backingSizeOff     = 16
	clusterBitsOff     = 20
	sizeOff            = 24
	cryptOff           = 32
	l1SizeOff          = 36
	l1TableOff         = 40
	incompatOff        = 72
	headerLenOff       = 100
	compressionOff     = 104
	headerV2Len        = 72
	incompatCompress   = 1 << 3 // compression type field present
	incompatExtL2      = 1 << 4 // extended L2 entries
	offsetMask         = 0x00fffffffffffe00
	compressedFlag     = 1 << 62
	zeroFlag           = 1
	extBackingFormat   = 0xe2792aca
	maxHeader          = 1 << 16
	maxBackingChain    = 16
	maxBackingNameSize = 1023
)

// Reader reads a qcow2 image's guest bytes. It is safe for concurrent use
// when its file and backing reader are.
type Reader struct {
	f           io.ReaderAt
	fileSize    int64
	size        int64
	clusterBits uint32
	l1          []uint64
	backing     io.ReaderAt
	// unreadable says why the guest's bytes cannot be read (a feature
	// this reader lacks); the header facts are still good.
	unreadable error
}

// NewReader reads the header and L1 table of the qcow2 image in f (of
// fileSize bytes; head holds at least its first 105 bytes, or all of a
// shorter file). Clusters the image does not hold read from backing at the
// same guest offset, or as zeros when backing is nil. A header this reader
// cannot use gives an ErrInvalidArgument error; an image using a feature it
// lacks (zstd clusters, extended L2 entries) opens, but its reads give an
// ErrNotImplemented error, also returned by Unreadable.
func NewReader(f io.ReaderAt, head []byte, fileSize int64, backing io.ReaderAt) (*Reader, error) {
	if len(head) < headerV2Len || !bytes.HasPrefix(head, Magic) {
		return nil, fmt.Errorf("not a qcow2 image: %w", errdefs.ErrInvalidArgument)
	}
	be := binary.BigEndian
	r := &Reader{f: f, fileSize: fileSize, clusterBits: be.Uint32(head[clusterBitsOff:]), backing: backing}
	if r.clusterBits < 9 || r.clusterBits > 21 {
		return nil, fmt.Errorf("qcow2 cluster size 2^%d is out of range: %w", r.clusterBits, errdefs.ErrInvalidArgument)
	}
	if be.Uint32(head[cryptOff:]) != 0 {
		return nil, fmt.Errorf("qcow2 image is encrypted: %w", errdefs.ErrInvalidArgument)
	}
	size := be.Uint64(head[sizeOff:])
	if size > 1<<62 {
		return nil, fmt.Errorf("qcow2 virtual size %d is invalid: %w", size, errdefs.ErrInvalidArgument)
	}
	r.size = int64(size)
	if be.Uint32(head[versionOff:]) >= 3 {
		if len(head) < compressionOff+1 {
			return nil, fmt.Errorf("qcow2 header truncated: %w", errdefs.ErrInvalidArgument)
		}
		incompat := be.Uint64(head[incompatOff:])
		if incompat&incompatExtL2 != 0 {
			r.unreadable = fmt.Errorf("reading a qcow2 disk with extended L2 entries is not supported (rewrite it: qemu-img convert -O qcow2 IN OUT): %w", errdefs.ErrNotImplemented)
		}
		if incompat&incompatCompress != 0 && head[compressionOff] != 0 {
			r.unreadable = fmt.Errorf("reading a qcow2 disk with zstd-compressed clusters is not supported (rewrite it: qemu-img convert -O qcow2 IN OUT): %w", errdefs.ErrNotImplemented)
		}
	}
	l1Size := int64(be.Uint32(head[l1SizeOff:]))
	l1Off := int64(be.Uint64(head[l1TableOff:]))
	if l1Size*8 > fileSize || l1Off < 0 || l1Off+l1Size*8 > fileSize {
		return nil, fmt.Errorf("qcow2 L1 table (%d entries at %d) lies outside the %d-byte file: %w", l1Size, l1Off, fileSize, errdefs.ErrInvalidArgument)
	}
	raw := make([]byte, l1Size*8)
	if _, err := f.ReadAt(raw, l1Off); err != nil {
		return nil, fmt.Errorf("read qcow2 L1 table: %w", err)
	}
	r.l1 = make([]uint64, l1Size)
	for i := range r.l1 {
		r.l1[i] = be.Uint64(raw[i*8:])
	}
	return r, nil
}

// Size is the guest's disk size in bytes (the header's virtual size).
func (r *Reader) Size() int64 { return r.size }

// Unreadable returns why reads fail (an ErrNotImplemented error), or nil.
func (r *Reader) Unreadable() error { return r.unreadable }

func (r *Reader) clusterSize() int64 { return 1 << r.clusterBits }

// ReadAt fills p from guest offset off, one cluster at a time. Reads past
// Size give io.EOF after the bytes before it.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if r.unreadable != nil {
		return 0, r.unreadable
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset: %w", errdefs.ErrInvalidArgument)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := len(p)
	if rem := r.size - off; int64(want) > rem {
		p = p[:rem]
	}
	n := 0
	for n < len(p) {
		at := off + int64(n)
		in := at % r.clusterSize()
		chunk := p[n:min(int64(len(p)), int64(n)+r.clusterSize()-in)]
		if err := r.read(chunk, at); err != nil {
			return n, err
		}
		n += len(chunk)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// read fills p, which lies within one cluster, from guest offset off.
func (r *Reader) read(p []byte, off int64) error {
	cs := r.clusterSize()
	l2Entries := cs / 8
	l1i := off / cs / l2Entries
	l2i := off / cs % l2Entries
	in := off % cs
	var entry uint64
	if l1i < int64(len(r.l1)) {
		if l2Off := int64(r.l1[l1i] & offsetMask); l2Off != 0 {
			var e [8]byte
			if _, err := r.f.ReadAt(e[:], l2Off+l2i*8); err != nil {
				return fmt.Errorf("read qcow2 L2 entry: %w", err)
			}
			entry = binary.BigEndian.Uint64(e[:])
		}
	}
	switch host := int64(entry & offsetMask); {
	case entry&compressedFlag != 0:
		cluster, err := r.compressed(entry)
		if err != nil {
			return err
		}
		copy(p, cluster[in:])
	case entry&zeroFlag != 0:
		clear(p)
	case host == 0:
		return r.fromBacking(p, off)
	default:
		n, err := r.f.ReadAt(p, host+in)
		if err != nil && !(errors.Is(err, io.EOF) && host+in+int64(n) == r.fileSize) {
			return fmt.Errorf("read qcow2 cluster at %d: %w", host, err)
		}
		clear(p[n:])
	}
	return nil
}

// fromBacking fills p from the backing reader, zeros past its end.
func (r *Reader) fromBacking(p []byte, off int64) error {
	if r.backing == nil {
		clear(p)
		return nil
	}
	n, err := r.backing.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read backing file: %w", err)
	}
	clear(p[n:])
	return nil
}

// compressed inflates a compressed cluster. Its L2 entry holds the host
// offset in its low 62-(clusterBits-8) bits and, above them, the number of
// extra 512-byte sectors the compressed data may span.
func (r *Reader) compressed(entry uint64) ([]byte, error) {
	x := 62 - (r.clusterBits - 8)
	host := int64(entry & (1<<x - 1))
	sectors := int64((entry>>x)&(1<<(r.clusterBits-8)-1)) + 1
	size := sectors*512 - host%512
	size = min(size, r.fileSize-host)
	if host <= 0 || size <= 0 {
		return nil, fmt.Errorf("qcow2 compressed cluster at %d lies outside the file: %w", host, errdefs.ErrInvalidArgument)
	}
	zr := flate.NewReader(io.NewSectionReader(r.f, host, size))
	defer zr.Close()
	out := make([]byte, r.clusterSize())
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, fmt.Errorf("inflate qcow2 cluster at %d: %w", host, err)
	}
	return out, nil
}

// Image is a disk image file opened with its whole backing chain: what a VM
// booted from it sees.
type Image struct {
	io.ReaderAt
	size  int64
	files []*os.File
}

// Open opens the disk image at path — qcow2, or raw — and, for qcow2, the
// backing files it names (a relative name is relative to the image's
// folder; the format is the one the image records, else probed), up to 16
// deep. The caller closes it.
func Open(path string) (*Image, error) {
	img := &Image{}
	r, size, err := img.open(path, "", 0)
	if err != nil {
		img.Close()
		return nil, err
	}
	img.ReaderAt, img.size = r, size
	return img, nil
}

// Size is the guest's disk size in bytes.
func (img *Image) Size() int64 { return img.size }

// Close closes every file of the chain.
func (img *Image) Close() error {
	var errs []error
	for _, f := range img.files {
		errs = append(errs, f.Close())
	}
	img.files = nil
	return errors.Join(errs...)
}

// Formats Open knows.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
)

func (img *Image) open(path, format string, depth int) (io.ReaderAt, int64, error) {
	if depth > maxBackingChain {
		return nil, 0, fmt.Errorf("disk %s: backing chain deeper than %d: %w", path, maxBackingChain, errdefs.ErrInvalidArgument)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("disk image: %w", err)
	}
	img.files = append(img.files, f)
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	head := make([]byte, min(fi.Size(), maxHeader))
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	if format == "" {
		format = FormatRaw
		if bytes.HasPrefix(head, Magic) {
			format = FormatQCOW2
		}
	}
	switch format {
	case FormatRaw:
		return io.NewSectionReader(f, 0, fi.Size()), fi.Size(), nil
	case FormatQCOW2:
	default:
		return nil, 0, fmt.Errorf("disk %s: format %q is not raw or qcow2: %w", path, format, errdefs.ErrNotImplemented)
	}
	name, bformat, err := backingFile(head)
	if err != nil {
		return nil, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	var backing io.ReaderAt
	if name != "" {
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(path), name)
		}
		if backing, _, err = img.open(name, bformat, depth+1); err != nil {
			return nil, 0, fmt.Errorf("disk %s: backing file: %w", path, err)
		}
	}
	r, err := NewReader(f, head, fi.Size(), backing)
	if err != nil {
		return nil, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	if err := r.Unreadable(); err != nil {
		return nil, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	return r, r.Size(), nil
}

// backingFile returns the backing file's name and format ("" when not
// recorded) from a qcow2 header, or "" when it has none.
func backingFile(head []byte) (name, format string, err error) {
	be := binary.BigEndian
	off, size := be.Uint64(head[backingOff:]), uint64(be.Uint32(head[backingSizeOff:]))
	if off == 0 {
		return "", "", nil
	}
	if size == 0 || size > maxBackingNameSize || off+size > uint64(len(head)) {
		return "", "", fmt.Errorf("qcow2 backing file name (%d bytes at %d) is invalid: %w", size, off, errdefs.ErrInvalidArgument)
	}
	name = string(head[off : off+size])
	// Header extensions follow the header (72 bytes in version 2, the
	// header_length field in 3): type, length, data padded to 8 bytes.
	ext := uint64(headerV2Len)
	if be.Uint32(head[versionOff:]) >= 3 && len(head) >= headerLenOff+4 {
		ext = uint64(be.Uint32(head[headerLenOff:]))
	}
	for ext+8 <= uint64(len(head)) && ext < off {
		typ, n := be.Uint32(head[ext:]), uint64(be.Uint32(head[ext+4:]))
		if typ == 0 || ext+8+n > uint64(len(head)) {
			break
		}
		if typ == extBackingFormat {
			format = string(head[ext+8 : ext+8+n])
		}
		ext += 8 + (n+7)/8*8
	}
	return name, format, nil
}
