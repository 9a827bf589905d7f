package rofs

import (
	"encoding/binary"
	"path"
	"sort"
	"strings"
	"testing"
)

// This file builds small ROFS images for the tests the way OSv's
// scripts/gen-rofs-img.py lays them out (and independently of Encode):
// file data from block 1, each directory's entries after those of its
// subdirectories, then the symlinks and inodes.

// spec describes an image's tree: "/a/" is a directory, "/a/f=text" a file
// holding text, "/a/l->target" a symlink. Parents are implied.
type spec []string

type node struct {
	name   string
	mode   uint64
	data   string
	kids   map[string]*node
	target string
}

func (s spec) tree() *node {
	root := &node{mode: ModeDir, kids: map[string]*node{}}
	for _, line := range s {
		p, data, isFile := strings.Cut(line, "=")
		p, target, isLink := strings.Cut(p, "->")
		dir := root
		names := strings.Split(strings.Trim(p, "/"), "/")
		for i, name := range names {
			last := i == len(names)-1
			n := dir.kids[name]
			if n == nil {
				n = &node{name: name, mode: ModeDir, kids: map[string]*node{}}
				dir.kids[name] = n
			}
			if last && isFile {
				n.mode, n.data = ModeRegular, data
			}
			if last && isLink {
				n.mode, n.target = ModeSymlink, target
			}
			dir = n
		}
	}
	return root
}

// genPartition returns the bytes of a ROFS partition holding s.
func genPartition(t testing.TB, s spec) []byte {
	t.Helper()
	le := binary.LittleEndian
	var (
		data     = make([]byte, BlockSize) // the superblock, filled in last
		entries  []byte
		nEntries uint64
		links    []byte
		nLinks   uint64
		inodes   []Inode
	)
	newInode := func(mode uint64) int {
		inodes = append(inodes, Inode{Mode: mode, No: uint64(len(inodes) + 1)})
		return len(inodes) - 1
	}
	var writeDir func(n *node, ino int)
	writeDir = func(n *node, ino int) {
		names := make([]string, 0, len(n.kids))
		for name := range n.kids {
			names = append(names, name)
		}
		sort.Strings(names)
		kids := make([]int, len(names))
		for i, name := range names {
			k := n.kids[name]
			kids[i] = newInode(k.mode)
			switch k.mode {
			case ModeDir:
				writeDir(k, kids[i])
			case ModeRegular:
				inodes[kids[i]].Offset = uint64(len(data) / BlockSize)
				inodes[kids[i]].Count = uint64(len(k.data))
				data = append(data, k.data...)
				data = append(data, make([]byte, (BlockSize-len(data)%BlockSize)%BlockSize)...)
			case ModeSymlink:
				inodes[kids[i]].Offset, inodes[kids[i]].Count = nLinks, 1
				links = le.AppendUint16(links, uint16(len(k.target)))
				links = append(links, k.target...)
				nLinks++
			}
		}
		inodes[ino].Offset, inodes[ino].Count = nEntries, uint64(len(names))
		for i, name := range names {
			entries = le.AppendUint64(entries, uint64(kids[i]+1))
			entries = le.AppendUint16(entries, uint16(len(name)))
			entries = append(entries, name...)
			nEntries++
		}
	}
	writeDir(s.tree(), newInode(ModeDir))
	first := uint64(len(data) / BlockSize)
	st := append(entries, links...)
	for _, in := range inodes {
		for _, v := range []uint64{in.Mode, in.No, in.Offset, in.Count} {
			st = le.AppendUint64(st, v)
		}
	}
	blocks := (uint64(len(st)) + BlockSize - 1) / BlockSize
	data = append(data, st...)
	data = append(data, make([]byte, int(first+blocks)*BlockSize-len(data))...)
	Superblock{
		Magic: Magic, Version: Version, BlockSize: BlockSize,
		StructFirst: first, StructBlocks: blocks,
		Entries: nEntries, Symlinks: nLinks, Inodes: uint64(len(inodes)),
	}.Encode(data)
	return data
}

// decodePartition decodes a partition's structure info.
func decodePartition(t *testing.T, part []byte) (Superblock, *FS) {
	t.Helper()
	sb := DecodeSuperblock(part)
	fs, err := Decode(sb, part[sb.StructFirst*BlockSize:(sb.StructFirst+sb.StructBlocks)*BlockSize])
	if err != nil {
		t.Fatal(err)
	}
	return sb, fs
}

// listing returns every path of fs with its kind and, for a file, its
// content read from part (symlinks: their target), sorted: what OSv would
// show of the tree.
func listing(t *testing.T, fs *FS, part []byte) []string {
	t.Helper()
	var out []string
	var walk func(ino uint64, p string, depth int)
	walk = func(ino uint64, p string, depth int) {
		if depth > 64 {
			t.Fatalf("%s: directory loop", p)
		}
		in := fs.Inodes[ino-1]
		switch {
		case in.IsDir():
			if p != "/" {
				out = append(out, p+"/")
			}
			for _, e := range fs.children(in) {
				walk(e.Inode, path.Join(p, e.Name), depth+1)
			}
		case in.IsRegular():
			out = append(out, p+"="+string(part[in.Offset*BlockSize:in.Offset*BlockSize+in.Count]))
		case in.IsSymlink():
			out = append(out, p+"->"+fs.Symlinks[in.Offset])
		}
	}
	walk(1, "/", 0)
	sort.Strings(out)
	return out
}

// expand returns s as listing shows it: with implied parents, sorted.
func (s spec) expand() []string {
	set := map[string]bool{}
	for _, line := range s {
		p, _, _ := strings.Cut(line, "=")
		p, _, _ = strings.Cut(p, "->")
		p = strings.TrimSuffix(p, "/")
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			set[d+"/"] = true
		}
		set[line] = true
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
