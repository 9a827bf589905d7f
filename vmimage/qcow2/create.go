package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// overlayClusterBits is the cluster size of the overlays CreateOverlay
// writes: 64 KiB, qemu-img's default.
const overlayClusterBits = 16

// CreateOverlay writes at path a qcow2 (version 3) image that holds no
// data of its own and reads every byte from backing, an absolute path to a
// raw or qcow2 image of format backingFormat — what `qemu-img create -f
// qcow2 -F FORMAT -b BACKING PATH` makes, without QEMU's tools. Its guest
// size is backing's (rounded up to 512 bytes). It reads only backing's
// header and writes four clusters of metadata, mostly holes, whatever the
// backing's size. The image appears at path whole or not at all (it is
// written beside it, synced and renamed); an existing path is replaced.
func CreateOverlay(path, backing, backingFormat string) error {
	if !filepath.IsAbs(backing) {
		return fmt.Errorf("qcow2 overlay: backing file %q is not an absolute path: %w", backing, errdefs.ErrInvalidArgument)
	}
	if len(backing) > maxBackingNameSize {
		return fmt.Errorf("qcow2 overlay: backing file name is %d bytes, more than %d: %w", len(backing), maxBackingNameSize, errdefs.ErrInvalidArgument)
	}
	if backingFormat != FormatRaw && backingFormat != FormatQCOW2 {
		return fmt.Errorf("qcow2 overlay: backing format %q is not raw or qcow2: %w", backingFormat, errdefs.ErrInvalidArgument)
	}
	size, err := guestSize(backing, backingFormat)
	if err != nil {
		return fmt.Errorf("qcow2 overlay: backing file: %w", err)
	}
	meta, length := overlayMetadata(size, backing, backingFormat)
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("qcow2 overlay: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, a no-op
	err = func() error {
		defer f.Close()
		for _, m := range meta {
			if _, err := f.WriteAt(m.data, m.off); err != nil {
				return err
			}
		}
		if err := f.Truncate(length); err != nil {
			return err
		}
		if err := f.Chmod(0o644); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	}()
	if err != nil {
		return fmt.Errorf("qcow2 overlay %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("qcow2 overlay: %w", err)
	}
	return nil
}

// guestSize returns the guest size of the image at path in format: a raw
// file's length, a qcow2 header's size field.
func guestSize(path, format string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	if format == FormatRaw {
		if fi.Size() == 0 {
			return 0, fmt.Errorf("%s is empty: %w", path, errdefs.ErrInvalidArgument)
		}
		return fi.Size(), nil
	}
	head := make([]byte, min(fi.Size(), maxHeader))
	if _, err := f.ReadAt(head, 0); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	r, err := NewReader(f, head, fi.Size(), nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if r.Size() <= 0 {
		return 0, fmt.Errorf("%s: qcow2 guest size %d: %w", path, r.Size(), errdefs.ErrInvalidArgument)
	}
	return r.Size(), nil
}

// chunk is bytes at a file offset.
type chunk struct {
	off  int64
	data []byte
}

// overlayMetadata lays out an empty overlay of the given guest size:
// cluster 0 the header, its extensions and the backing file's name;
// cluster 1 the refcount table; cluster 2 its one refcount block; clusters
// 3… the L1 table, all zero (no L2 table: every cluster reads from the
// backing file). It returns what to write and the file's length.
func overlayMetadata(size int64, backing, backingFormat string) ([]chunk, int64) {
	const (
		cluster      = 1 << overlayClusterBits
		l2Entries    = cluster / 8
		headerLen    = 104
		refcountBits = 16
	)
	size = (size + 511) / 512 * 512
	l1Size := (size + cluster*l2Entries - 1) / (cluster * l2Entries)
	l1Clusters := (l1Size*8 + cluster - 1) / cluster
	clusters := 3 + l1Clusters
	be := binary.BigEndian

	h := make([]byte, headerLen)
	copy(h, Magic)
	be.PutUint32(h[versionOff:], 3)
	be.PutUint32(h[clusterBitsOff:], overlayClusterBits)
	be.PutUint64(h[sizeOff:], uint64(size))
	be.PutUint32(h[l1SizeOff:], uint32(l1Size))
	be.PutUint64(h[l1TableOff:], 3*cluster)
	be.PutUint64(h[48:], 1*cluster) // refcount_table_offset
	be.PutUint32(h[56:], 1)         // refcount_table_clusters
	be.PutUint32(h[96:], 4)         // refcount_order: 16-bit refcounts
	be.PutUint32(h[headerLenOff:], headerLen)
	// Extensions: the backing format, then the end.
	ext := make([]byte, 8+(len(backingFormat)+7)/8*8+8)
	be.PutUint32(ext, extBackingFormat)
	be.PutUint32(ext[4:], uint32(len(backingFormat)))
	copy(ext[8:], backingFormat)
	h = append(h, ext...)
	be.PutUint64(h[backingOff:], uint64(len(h)))
	be.PutUint32(h[backingSizeOff:], uint32(len(backing)))
	h = append(h, backing...)

	table := make([]byte, 8)
	be.PutUint64(table, 2*cluster)
	block := make([]byte, clusters*refcountBits/8)
	for i := range clusters {
		be.PutUint16(block[i*2:], 1)
	}
	return []chunk{{0, h}, {cluster, table}, {2 * cluster, block}}, clusters * cluster
}

// ErrNoBacking is returned by BackingFile for an image with no backing file.
var ErrNoBacking = errors.New("qcow2 image has no backing file")

// BackingFile returns the backing file's name and format (format "" when
// the image does not record it) of the qcow2 image at path, or ErrNoBacking.
func BackingFile(path string) (name, format string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	head := make([]byte, maxHeader)
	n, err := f.ReadAt(head, 0)
	if n < headerV2Len {
		return "", "", fmt.Errorf("qcow2 %s: short header: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	head = head[:n]
	if string(head[:4]) != string(Magic) {
		return "", "", fmt.Errorf("%s is not a qcow2 image: %w", path, errdefs.ErrInvalidArgument)
	}
	name, format, err = backingFile(head)
	if err != nil {
		return "", "", fmt.Errorf("qcow2 %s: %w", path, err)
	}
	if name == "" {
		return "", "", ErrNoBacking
	}
	return name, format, nil
}
