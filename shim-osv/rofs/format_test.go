package rofs

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// image is the tree most tests start from: like OSv's, with a file, a
// symlink, an empty directory and one holding a file.
var image = spec{
	"/etc/hosts=127.0.0.1 localhost\n",
	"/etc/mnttab->/proc/mounts",
	"/etc/feather-test.txt=feather test file\n",
	"/data/.keep=",
	"/tmp/",
	"/usr/lib/libc.so=" + strings.Repeat("x", 1300),
	"/ls=ELF",
}

func TestDecodeEncode(t *testing.T) {
	part := genPartition(t, image)
	sb, fs := decodePartition(t, part)
	if got, want := listing(t, fs, part), image.expand(); !slices.Equal(got, want) {
		t.Fatalf("decoded tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	b, sb2, err := fs.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if sb2.Entries != sb.Entries || sb2.Symlinks != sb.Symlinks || sb2.Inodes != sb.Inodes {
		t.Errorf("re-encoded counts %+v, want those of %+v", sb2, sb)
	}
	fs2, err := Decode(sb2, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := listing(t, fs2, part), image.expand(); !slices.Equal(got, want) {
		t.Errorf("re-encoded tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Encoding is stable: what Encode wrote decodes and encodes the same.
	if b2, _, err := fs2.Encode(); err != nil || !slices.Equal(b, b2) {
		t.Errorf("second encoding differs (%v)", err)
	}
	// The structure only moved: same size, padding aside.
	if got, want := (len(b)+BlockSize-1)/BlockSize, int(sb.StructBlocks); got != want {
		t.Errorf("re-encoded structure takes %d blocks, the original %d", got, want)
	}
}

func TestMkdirAll(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dirs    []string
		added   []string
		err     error
		message string
	}{
		{name: "existing", dirs: []string{"/etc", "/tmp", "/", "/usr/lib"}},
		{name: "top level", dirs: []string{"/config"}, added: []string{"/config"}},
		{name: "with parents", dirs: []string{"/var/run/secrets/kubernetes.io/serviceaccount"},
			added: []string{"/var", "/var/run", "/var/run/secrets", "/var/run/secrets/kubernetes.io", "/var/run/secrets/kubernetes.io/serviceaccount"}},
		{name: "in a directory with files", dirs: []string{"/data/sub", "/etc/x"}, added: []string{"/data/sub", "/etc/x"}},
		{name: "in an empty directory", dirs: []string{"/tmp/a/b"}, added: []string{"/tmp/a", "/tmp/a/b"}},
		{name: "several, sharing parents", dirs: []string{"/a/b", "/a/c", "/config", "/a/b/d", "/config"},
			added: []string{"/a", "/a/b", "/a/c", "/config", "/a/b/d"}},
		{name: "under a file", dirs: []string{"/etc/feather-test.txt/x"}, err: errdefs.ErrInvalidArgument,
			message: "mountPath /etc/feather-test.txt/x: /etc/feather-test.txt is a file in the image"},
		{name: "a file", dirs: []string{"/ls"}, err: errdefs.ErrInvalidArgument,
			message: "mountPath /ls: /ls is a file in the image"},
		{name: "under a symlink", dirs: []string{"/etc/mnttab/x"}, err: errdefs.ErrInvalidArgument,
			message: "mountPath /etc/mnttab/x: /etc/mnttab is a symlink in the image"},
		{name: "relative", dirs: []string{"config"}, err: errdefs.ErrInvalidArgument},
		{name: "unclean", dirs: []string{"/config/"}, err: errdefs.ErrInvalidArgument},
		{name: "dot-dot", dirs: []string{"/a/../b"}, err: errdefs.ErrInvalidArgument},
		{name: "NUL", dirs: []string{"/a\x00b"}, err: errdefs.ErrInvalidArgument},
		{name: "long name", dirs: []string{"/" + strings.Repeat("n", 1<<16)}, err: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			part := genPartition(t, image)
			_, fs := decodePartition(t, part)
			var added []string
			var err error
			for _, d := range tc.dirs {
				var a []string
				if a, err = fs.MkdirAll(d); err != nil {
					break
				}
				added = append(added, a...)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.message) {
					t.Fatalf("err = %v, want %v saying %q", err, tc.err, tc.message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(added, tc.added) {
				t.Errorf("added %q, want %q", added, tc.added)
			}
			b, sb, err := fs.Encode()
			if err != nil {
				t.Fatal(err)
			}
			fs2, err := Decode(sb, b)
			if err != nil {
				t.Fatal(err)
			}
			want := image
			for _, a := range tc.added {
				want = append(want, a+"/")
			}
			if got := listing(t, fs2, part); !slices.Equal(got, want.expand()) {
				t.Errorf("tree after:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want.expand(), "\n"))
			}
			// No entry is left unreferenced, so the table only grew by the
			// new directories.
			if want := len(image.expand()) + len(tc.added); int(sb.Entries) != want {
				t.Errorf("%d directory entries, want %d", sb.Entries, want)
			}
			for _, d := range tc.dirs {
				if ino, err := fs2.Lookup(d); err != nil || ino == 0 || !fs2.Inodes[ino-1].IsDir() {
					t.Errorf("Lookup(%s) = %d, %v: want a directory", d, ino, err)
				}
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	le := binary.LittleEndian
	good := genPartition(t, spec{"/etc/hosts=h", "/l->/x", "/d/"})
	sb := DecodeSuperblock(good)
	st := good[sb.StructFirst*BlockSize : (sb.StructFirst+sb.StructBlocks)*BlockSize]
	// Offsets into st: entries (hosts, etc, l, d), the symlink, inodes.
	inodes := 8 + 2 + 5 + 8 + 2 + 3 + 8 + 2 + 1 + 8 + 2 + 1 + 2 + 2
	for _, tc := range []struct {
		name  string
		edit  func(sb *Superblock, st []byte)
		wants string
	}{
		{"too many entries", func(sb *Superblock, st []byte) { sb.Entries = 1 << 40 }, "do not fit"},
		{"entry past the end", func(sb *Superblock, st []byte) { le.PutUint16(st[8:], 60000) }, "runs past the end"},
		{"entry names no inode", func(sb *Superblock, st []byte) { le.PutUint64(st, 99) }, "names inode 99"},
		{"root not a directory", func(sb *Superblock, st []byte) { le.PutUint64(st[inodes:], ModeRegular) }, "root"},
		{"directory run outside", func(sb *Superblock, st []byte) { le.PutUint64(st[inodes+16:], 3) }, "has entries 3+"},
		{"symlink outside", func(sb *Superblock, st []byte) {
			for i := inodes; i < inodes+int(sb.Inodes)*InodeSize; i += InodeSize {
				if le.Uint64(st[i:]) == ModeSymlink {
					le.PutUint64(st[i+16:], 5)
				}
			}
		}, "is link 5"},
		{"inodes past the end", func(sb *Superblock, st []byte) { sb.Inodes = uint64(len(st))/InodeSize - 1 }, "inode table runs past"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, b := sb, slices.Clone(st)
			tc.edit(&s, b)
			_, err := Decode(s, b)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wants) {
				t.Errorf("err = %v, want ErrInvalidArgument saying %q", err, tc.wants)
			}
		})
	}
	if _, err := Decode(sb, st); err != nil {
		t.Errorf("unedited: %v", err)
	}
}

// FuzzDecode feeds Decode structures it must refuse or accept without
// panicking; what it accepts, MkdirAll and Encode must handle, and the
// encoding must decode again.
func FuzzDecode(f *testing.F) {
	part := genPartition(f, image)
	sb := DecodeSuperblock(part)
	f.Add(sb.Entries, sb.Symlinks, sb.Inodes, part[sb.StructFirst*BlockSize:], "/etc/x/y")
	f.Add(uint64(1), uint64(0), uint64(2), make([]byte, 200), "/config")
	f.Fuzz(func(t *testing.T, entries, symlinks, inodes uint64, b []byte, dir string) {
		fs, err := Decode(Superblock{Entries: entries, Symlinks: symlinks, Inodes: inodes}, b)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Decode: %v, not ErrInvalidArgument", err)
			}
			return
		}
		if _, err := fs.MkdirAll(dir); err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("MkdirAll: %v, not ErrInvalidArgument", err)
		}
		out, sb, err := fs.Encode()
		if err != nil {
			return
		}
		if _, err := Decode(sb, out); err != nil {
			t.Fatalf("Decode of Encode: %v", err)
		}
	})
}
