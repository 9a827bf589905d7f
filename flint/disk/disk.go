// Package disk reads the unikernel disk images Flint packs: their format and
// virtual size (through vmimage, the image format's one definition), and
// the guest's view of their first sectors — the boot sector and the OSv
// command line at byte 512 — for raw and qcow2 disks alike, with no QEMU
// tools.
package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/osv"
	"github.com/feather-edge/feather/vmimage"
	"github.com/feather-edge/feather/vmimage/qcow2"
)

// Disk is an open disk image file.
type Disk struct {
	vmimage.DiskInfo
	// Path is the file's path; Size its length in bytes.
	Path string
	Size int64

	f     *os.File
	qcow2 *qcow2.Reader
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
		if d.qcow2, err = qcow2.NewReader(f, head[:n], fi.Size(), nil); err != nil {
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
	if d.qcow2 != nil {
		return d.qcow2.ReadAt(p, off)
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
	n, err := d.f.ReadAt(p, off)
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
