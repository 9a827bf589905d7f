// Package rofs edits OSv's read-only root filesystem (ROFS) in a VM's
// instance disk: EnsureDirs adds the mount-point directories a pod's
// volumes need, which OSv cannot create on its read-only root.
//
// The on-disk format (OSv's fs/rofs/rofs.hh and scripts/gen-rofs-img.py),
// all little-endian, in 512-byte blocks from the start of the partition:
// block 0 is the superblock; file data follows, each file in whole blocks;
// then the structure info, which OSv reads whole at mount: the directory
// entries (inode number, 16-bit name length, name), the symlinks (16-bit
// length, target) and the inodes (mode, number, offset, count; 32 bytes
// each). A directory's inode points to a contiguous run of entries (offset:
// index of the first, count: how many); a file's to its first data block
// (count: its size in bytes); a symlink's to its index in the symlink table.
// Inode n is the table's n-th (from 1); inode 1 is the root directory.
package rofs

import (
	"encoding/binary"
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// Format constants.
const (
	// Magic is the superblock's first field.
	Magic = 0xDEADBEAD
	// Version is the only version OSv mounts.
	Version = 1
	// BlockSize is the unit of a ROFS partition.
	BlockSize = 512
	// SuperblockSize is the encoded superblock's size; the rest of block 0
	// is zeros.
	SuperblockSize = 64
	// InodeSize is an encoded inode's size.
	InodeSize = 32
	// maxName is the longest name or symlink target (a 16-bit length).
	maxName = 1<<16 - 1
)

// Inode types (the S_IFMT bits of Inode.Mode).
const (
	modeType    = 0o170000
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeSymlink = 0o120000
)

// Superblock is a ROFS partition's block 0.
type Superblock struct {
	Magic, Version, BlockSize uint64
	// StructFirst is the first block of the structure info and
	// StructBlocks how many blocks it spans.
	StructFirst, StructBlocks uint64
	// Entries, Symlinks and Inodes count the tables' items.
	Entries, Symlinks, Inodes uint64
}

// DecodeSuperblock decodes b's first SuperblockSize bytes. It checks
// nothing: see FS.
func DecodeSuperblock(b []byte) Superblock {
	le := binary.LittleEndian
	return Superblock{
		Magic: le.Uint64(b[0:]), Version: le.Uint64(b[8:]), BlockSize: le.Uint64(b[16:]),
		StructFirst: le.Uint64(b[24:]), StructBlocks: le.Uint64(b[32:]),
		Entries: le.Uint64(b[40:]), Symlinks: le.Uint64(b[48:]), Inodes: le.Uint64(b[56:]),
	}
}

// Encode writes the superblock into b's first SuperblockSize bytes.
func (sb Superblock) Encode(b []byte) {
	le := binary.LittleEndian
	for i, v := range []uint64{sb.Magic, sb.Version, sb.BlockSize, sb.StructFirst, sb.StructBlocks, sb.Entries, sb.Symlinks, sb.Inodes} {
		le.PutUint64(b[8*i:], v)
	}
}

// Inode is one file, directory or symlink.
type Inode struct {
	// Mode holds the type bits (OSv reads the low 32 bits, a mode_t).
	Mode uint64
	// No is the inode's number: its index in the table plus one.
	No uint64
	// Offset and Count: see the package comment.
	Offset, Count uint64
}

// IsDir reports whether the inode is a directory.
func (in Inode) IsDir() bool { return in.Mode&modeType == ModeDir }

// IsSymlink reports whether the inode is a symbolic link.
func (in Inode) IsSymlink() bool { return in.Mode&modeType == ModeSymlink }

// IsRegular reports whether the inode is a regular file.
func (in Inode) IsRegular() bool { return in.Mode&modeType == ModeRegular }

// Entry is a directory entry: a name and the inode it names.
type Entry struct {
	Name  string
	Inode uint64
}

// FS is a ROFS's structure info, decoded: its three tables.
type FS struct {
	Entries  []Entry
	Symlinks []string
	Inodes   []Inode
}

// Decode decodes the structure info b (the superblock's StructBlocks blocks
// from StructFirst) as sb describes it, checking that every reference
// stays inside its table, so that walking the result cannot go astray. A
// structure OSv could not use gives an ErrInvalidArgument error.
func Decode(sb Superblock, b []byte) (*FS, error) {
	invalid := func(format string, args ...any) (*FS, error) {
		return nil, fmt.Errorf("rofs structure: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	// Every item takes some bytes, so counts beyond the data are lies.
	if sb.Entries > uint64(len(b))/10 || sb.Symlinks > uint64(len(b))/2 || sb.Inodes > uint64(len(b))/InodeSize {
		return invalid("%d entries, %d symlinks, %d inodes do not fit in %d bytes", sb.Entries, sb.Symlinks, sb.Inodes, len(b))
	}
	fs := &FS{
		Entries:  make([]Entry, sb.Entries),
		Symlinks: make([]string, sb.Symlinks),
		Inodes:   make([]Inode, sb.Inodes),
	}
	le := binary.LittleEndian
	p := b
	short := func(n int) bool { return len(p) < n }
	for i := range fs.Entries {
		if short(10) {
			return invalid("directory entry %d runs past the end", i)
		}
		ino, n := le.Uint64(p), int(le.Uint16(p[8:]))
		if short(10 + n) {
			return invalid("directory entry %d runs past the end", i)
		}
		fs.Entries[i] = Entry{Name: string(p[10 : 10+n]), Inode: ino}
		p = p[10+n:]
	}
	for i := range fs.Symlinks {
		if short(2) {
			return invalid("symlink %d runs past the end", i)
		}
		n := int(le.Uint16(p))
		if short(2 + n) {
			return invalid("symlink %d runs past the end", i)
		}
		fs.Symlinks[i] = string(p[2 : 2+n])
		p = p[2+n:]
	}
	if short(len(fs.Inodes) * InodeSize) {
		return invalid("the inode table runs past the end")
	}
	for i := range fs.Inodes {
		q := p[i*InodeSize:]
		fs.Inodes[i] = Inode{Mode: le.Uint64(q), No: le.Uint64(q[8:]), Offset: le.Uint64(q[16:]), Count: le.Uint64(q[24:])}
	}
	if len(fs.Inodes) == 0 || !fs.Inodes[0].IsDir() {
		return invalid("inode 1, the root, is not a directory")
	}
	for i, e := range fs.Entries {
		if e.Inode < 1 || e.Inode > uint64(len(fs.Inodes)) {
			return invalid("directory entry %d (%q) names inode %d of %d", i, e.Name, e.Inode, len(fs.Inodes))
		}
	}
	for i, in := range fs.Inodes {
		switch {
		case in.IsDir() && in.Count > 0 && (in.Offset >= uint64(len(fs.Entries)) || in.Count > uint64(len(fs.Entries))-in.Offset):
			return invalid("directory inode %d has entries %d+%d of %d", i+1, in.Offset, in.Count, len(fs.Entries))
		case in.IsSymlink() && in.Offset >= uint64(len(fs.Symlinks)):
			return invalid("symlink inode %d is link %d of %d", i+1, in.Offset, len(fs.Symlinks))
		}
	}
	return fs, nil
}

// Encode encodes the structure info, with its directory entries laid out
// afresh (each directory's run in inode order, none left unreferenced), and
// returns it with the superblock counts that describe it; the caller sets
// the superblock's StructFirst and StructBlocks (len(b) rounded up to whole
// blocks). fs is not changed.
func (fs *FS) Encode() ([]byte, Superblock, error) {
	inodes := make([]Inode, len(fs.Inodes))
	copy(inodes, fs.Inodes)
	var entries []Entry
	for i, in := range inodes {
		if !in.IsDir() {
			continue
		}
		start := uint64(len(entries))
		entries = append(entries, fs.children(in)...)
		inodes[i].Offset = start
	}
	le := binary.LittleEndian
	var b []byte
	for _, e := range entries {
		if len(e.Name) > maxName {
			return nil, Superblock{}, fmt.Errorf("rofs: name %.40q… is longer than %d bytes: %w", e.Name, maxName, errdefs.ErrInvalidArgument)
		}
		b = le.AppendUint64(b, e.Inode)
		b = le.AppendUint16(b, uint16(len(e.Name)))
		b = append(b, e.Name...)
	}
	for _, s := range fs.Symlinks {
		if len(s) > maxName {
			return nil, Superblock{}, fmt.Errorf("rofs: symlink target %.40q… is longer than %d bytes: %w", s, maxName, errdefs.ErrInvalidArgument)
		}
		b = le.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	for _, in := range inodes {
		for _, v := range []uint64{in.Mode, in.No, in.Offset, in.Count} {
			b = le.AppendUint64(b, v)
		}
	}
	sb := Superblock{
		Magic: Magic, Version: Version, BlockSize: BlockSize,
		Entries: uint64(len(entries)), Symlinks: uint64(len(fs.Symlinks)), Inodes: uint64(len(inodes)),
	}
	return b, sb, nil
}

// children returns a directory inode's entries.
func (fs *FS) children(dir Inode) []Entry {
	if dir.Count == 0 {
		return nil
	}
	return fs.Entries[dir.Offset : dir.Offset+dir.Count]
}

// Lookup returns the inode number of the absolute path p, following no
// symlinks, or 0 when p does not exist. A component that is not a
// directory gives an ErrInvalidArgument error naming it.
func (fs *FS) Lookup(p string) (uint64, error) {
	ino := uint64(1)
	for prefix, name := range components(p) {
		next, err := fs.child(ino, prefix, name)
		if err != nil || next == 0 {
			return 0, err
		}
		ino = next
	}
	return ino, nil
}

// child returns the inode named name in directory inode dir (whose path is
// dirPath), 0 when there is none; an error when dir is no directory.
func (fs *FS) child(dir uint64, dirPath, name string) (uint64, error) {
	in := fs.Inodes[dir-1]
	if err := notDir(in, dirPath); err != nil {
		return 0, err
	}
	// OSv's lookup takes the first entry of the name.
	for _, e := range fs.children(in) {
		if e.Name == name {
			return e.Inode, nil
		}
	}
	return 0, nil
}

// MkdirAll makes directory p and any missing parents, as OSv's ROFS lists
// directories (mode ModeDir, no permission bits, as gen-rofs-img.py writes
// them), and returns the paths it added, parents first. p must be absolute
// and clean; a component of it that exists as a file or symlink gives an
// ErrInvalidArgument error naming both.
func (fs *FS) MkdirAll(p string) ([]string, error) {
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	var added []string
	ino := uint64(1)
	for prefix, name := range components(p) {
		next, err := fs.child(ino, prefix, name)
		if err != nil {
			return added, fmt.Errorf("mountPath %s: %w", p, err)
		}
		if next == 0 {
			next = fs.mkdir(ino, name)
			added = append(added, path.Join(prefix, name))
		}
		ino = next
	}
	// The last component must itself be a directory.
	if err := notDir(fs.Inodes[ino-1], p); err != nil {
		return added, fmt.Errorf("mountPath %s: %w", p, err)
	}
	return added, nil
}

// notDir returns an ErrInvalidArgument error saying what p is when its
// inode in is no directory, else nil.
func notDir(in Inode, p string) error {
	switch {
	case in.IsDir():
		return nil
	case in.IsSymlink():
		return fmt.Errorf("%s is a symlink in the image: %w", p, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%s is a file in the image: %w", p, errdefs.ErrInvalidArgument)
}

// mkdir adds an empty directory name to directory inode parent and returns
// its inode number. The parent's run of entries moves to the end of the
// table unless it is there already (Encode drops the old run).
func (fs *FS) mkdir(parent uint64, name string) uint64 {
	no := uint64(len(fs.Inodes)) + 1
	fs.Inodes = append(fs.Inodes, Inode{Mode: ModeDir, No: no})
	dir := &fs.Inodes[parent-1]
	if dir.Count == 0 || dir.Offset+dir.Count != uint64(len(fs.Entries)) {
		run := fs.children(*dir)
		dir.Offset = uint64(len(fs.Entries))
		fs.Entries = append(fs.Entries, run...)
	}
	fs.Entries = append(fs.Entries, Entry{Name: name, Inode: no})
	dir.Count++
	fs.Inodes[no-1].Offset = uint64(len(fs.Entries))
	return no
}

// CheckPath checks that p is a mount point EnsureDirs can make: absolute,
// clean, without NUL bytes, each name at most 65535 bytes.
func CheckPath(p string) error {
	switch {
	case !path.IsAbs(p) || path.Clean(p) != p:
		return fmt.Errorf("mountPath %q: want an absolute, clean path: %w", p, errdefs.ErrInvalidArgument)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("mountPath %q: contains a NUL byte: %w", p, errdefs.ErrInvalidArgument)
	}
	for _, name := range strings.Split(p, "/") {
		if len(name) > maxName {
			return fmt.Errorf("mountPath %.60q…: a name is longer than %d bytes: %w", p, maxName, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// components yields each name of the absolute clean path p with the path
// of the directory holding it.
func components(p string) func(yield func(dir, name string) bool) {
	return func(yield func(dir, name string) bool) {
		dir := "/"
		for _, name := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			if name == "" {
				return
			}
			if !yield(dir, name) {
				return
			}
			dir = path.Join(dir, name)
		}
	}
}
