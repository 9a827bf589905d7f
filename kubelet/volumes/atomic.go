package volumes

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

const (
	dataLink    = "..data"
	dataTmpLink = "..data_tmp"
	// tsLayout names a version directory, as kubelet's AtomicWriter does; os.MkdirTemp appends a random suffix.
	tsLayout = "..2006_01_02_15_04_05."

	maxPathLen    = 4096
	maxSegmentLen = 255
)

// file is one file of an atomic-writer volume.
type file struct {
	data []byte
	mode os.FileMode // permission bits only
}

// payload maps a cleaned relative path to the file written there.
type payload map[string]file

// add checks p and adds it; two sources (keys, items, projections) writing one path, or a path under another
// file, are errors.
func (pl payload) add(p string, f file) error {
	clean, err := cleanItemPath(p)
	if err != nil {
		return err
	}
	if _, dup := pl[clean]; dup {
		return fmt.Errorf("path %q is written twice: %w", clean, errdefs.ErrInvalidArgument)
	}
	for other := range pl {
		if strings.HasPrefix(clean, other+"/") || strings.HasPrefix(other, clean+"/") {
			return fmt.Errorf("path %q conflicts with path %q (one would be a directory of the other): %w",
				clean, other, errdefs.ErrInvalidArgument)
		}
	}
	pl[clean] = f
	return nil
}

// cleanItemPath checks the path of a key or item inside its volume and returns it cleaned. It refuses, before
// anything is written, every path that could leave the volume or clash with the atomic-writer names: absolute
// paths, ".." elements, a first element starting with "..", empty paths, NUL bytes and over-long names.
func cleanItemPath(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("invalid path %q: %s: %w", p, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case p == "":
		return bad("must not be empty")
	case len(p) > maxPathLen:
		return bad(fmt.Sprintf("longer than %d bytes", maxPathLen))
	case strings.ContainsRune(p, 0):
		return bad("contains a NUL byte")
	case strings.HasPrefix(p, "/") || filepath.IsAbs(p):
		return bad("must be relative to the volume, not absolute")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return bad("must not contain '..'")
		}
		if len(seg) > maxSegmentLen {
			return bad(fmt.Sprintf("element longer than %d bytes", maxSegmentLen))
		}
	}
	clean := path.Clean(p)
	if clean == "." {
		return bad("names no file")
	}
	if strings.HasPrefix(clean, "..") {
		return bad("must not start with '..' (reserved for the volume's own files)")
	}
	return clean, nil
}

// writeAtomic makes dir hold exactly the files of pl, by the scheme in the package documentation, and reports
// whether anything changed. dir must exist. With gid, files and directories get group gid and group read
// permission (directories also setgid), as kubelet does for fsGroup.
func writeAtomic(dir string, pl payload, gid *int64, now time.Time) (changed bool, err error) {
	for p := range pl {
		// Paths normally come through payload.add; check again, since a bad path here could escape dir.
		if c, err := cleanItemPath(p); err != nil || c != p {
			return false, fmt.Errorf("refusing to write path %q: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	old, err := currentVersion(dir)
	if err != nil {
		return false, err
	}
	if old != "" {
		same, err := sameContent(filepath.Join(dir, old), pl, gid)
		if err != nil {
			return false, err
		}
		if same {
			return false, removeStale(dir, old, pl)
		}
	}

	ts, err := os.MkdirTemp(dir, now.UTC().Format(tsLayout))
	if err != nil {
		return false, fmt.Errorf("create version directory: %w", err)
	}
	tsName := filepath.Base(ts)
	if err := writeVersion(ts, pl, gid); err != nil {
		_ = os.RemoveAll(ts)
		return false, err
	}

	tmp := filepath.Join(dir, dataTmpLink)
	_ = os.Remove(tmp)
	if err := os.Symlink(tsName, tmp); err != nil {
		_ = os.RemoveAll(ts)
		return false, fmt.Errorf("link new version: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		_ = os.Remove(tmp)
		_ = os.RemoveAll(ts)
		return false, fmt.Errorf("swap to new version: %w", err)
	}

	// From here on the new version is live; what follows only tidies up, and is redone by the next write.
	for _, top := range topLevel(pl) {
		link := filepath.Join(dir, top)
		target := filepath.Join(dataLink, top)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		if err := os.RemoveAll(link); err != nil {
			return true, fmt.Errorf("replace %s: %w", top, err)
		}
		if err := os.Symlink(target, link); err != nil {
			return true, fmt.Errorf("link %s: %w", top, err)
		}
	}
	return true, removeStale(dir, tsName, pl)
}

// currentVersion returns the name of the directory ..data points at, or "" when there is none.
func currentVersion(dir string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, dataLink))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", dataLink, err)
	}
	if strings.Contains(target, "/") || !strings.HasPrefix(target, "..") {
		return "", fmt.Errorf("%s points at %q, outside the volume: %w", dataLink, target, errdefs.ErrFailedPrecondition)
	}
	return target, nil
}

// writeVersion writes the files of pl below ts, with modes set exactly (whatever the umask).
func writeVersion(ts string, pl payload, gid *int64) error {
	if err := setOwnership(ts, 0o755, true, gid); err != nil {
		return err
	}
	paths := make([]string, 0, len(pl))
	for p := range pl {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		f := pl[p]
		// Create missing parent directories one by one, below ts only.
		parent := ts
		segs := strings.Split(p, "/")
		for _, seg := range segs[:len(segs)-1] {
			parent = filepath.Join(parent, seg)
			if err := os.Mkdir(parent, 0o755); err != nil {
				if errors.Is(err, fs.ErrExist) {
					continue
				}
				return fmt.Errorf("create directory for %s: %w", p, err)
			}
			if err := setOwnership(parent, 0o755, true, gid); err != nil {
				return err
			}
		}
		full := filepath.Join(ts, p)
		if err := os.WriteFile(full, f.data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := setOwnership(full, f.mode, false, gid); err != nil {
			return err
		}
	}
	return nil
}

// setOwnership sets mode on p exactly and, with gid, applies fsGroup the way kubelet does for read-only volumes:
// group gid, group read, and for directories group search and setgid.
func setOwnership(p string, mode os.FileMode, dir bool, gid *int64) error {
	if gid != nil {
		if err := os.Lchown(p, -1, int(*gid)); err != nil {
			return fmt.Errorf("set group of %s: %w", p, err)
		}
		mode = fsGroupMode(mode, dir, true)
	}
	if err := os.Chmod(p, mode); err != nil {
		return fmt.Errorf("set mode of %s: %w", p, err)
	}
	return nil
}

// fsGroupMode is the mode kubelet gives a file or directory of a volume with fsGroup.
func fsGroupMode(mode os.FileMode, dir, readOnly bool) os.FileMode {
	mask := os.FileMode(0o660)
	if readOnly {
		mask = 0o440
	}
	if dir {
		mask |= os.ModeSetgid | 0o110
	}
	return mode | mask
}

// sameContent reports whether the version directory ts holds exactly the files of pl, with their modes.
func sameContent(ts string, pl payload, gid *int64) (bool, error) {
	seen := 0
	err := filepath.WalkDir(ts, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(ts, p)
		if err != nil {
			return err
		}
		want, ok := pl[filepath.ToSlash(rel)]
		if !ok || !d.Type().IsRegular() {
			return errDiffers
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := want.mode
		if gid != nil {
			mode = fsGroupMode(mode, false, true)
		}
		if info.Mode().Perm() != mode.Perm() || info.Size() != int64(len(want.data)) {
			return errDiffers
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want.data) {
			return errDiffers
		}
		seen++
		return nil
	})
	if errors.Is(err, errDiffers) || errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read current version: %w", err)
	}
	return seen == len(pl), nil
}

var errDiffers = errors.New("differs")

// topLevel returns the sorted first elements of the paths of pl.
func topLevel(pl payload) []string {
	set := map[string]bool{}
	for p := range pl {
		set[strings.SplitN(p, "/", 2)[0]] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// removeStale removes from dir every top-level symlink that pl no longer names and every version directory or
// temporary link other than keep and ..data.
func removeStale(dir, keep string, pl payload) error {
	want := map[string]bool{}
	for _, top := range topLevel(pl) {
		want[top] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list volume: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if name == dataLink || name == keep || want[name] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, fmt.Errorf("remove stale %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
