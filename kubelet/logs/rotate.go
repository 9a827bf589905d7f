package logs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rotation bounds a container run's log as kubelet's containerLogMaxSize and
// containerLogMaxFiles do. The zero Rotation does not rotate.
type Rotation struct {
	// MaxSize is the size in bytes at which the log file is rotated: a
	// write that would take the file past it goes to a new file instead
	// (a file holds whole records, so one larger than MaxSize may take a
	// file past it). 0 or less does not rotate.
	MaxSize int64
	// MaxFiles is how many files the log may have, the one being written
	// included; the oldest rotated files beyond that are removed. Kubelet
	// wants at least 2; less than 2 keeps one rotated file.
	MaxFiles int
}

// DefaultRotation is kubelet's default: 10 MiB per file, 5 files.
var DefaultRotation = Rotation{MaxSize: 10 << 20, MaxFiles: 5}

// Validate checks r as kubelet checks its configuration, in the words of
// the agent's flags.
func (r Rotation) Validate() error {
	if r.MaxSize <= 0 {
		return fmt.Errorf("container log max size %d: must be positive", r.MaxSize)
	}
	if r.MaxFiles < 2 {
		return fmt.Errorf("container log max files %d: must be at least 2", r.MaxFiles)
	}
	return nil
}

// RotatedTimeFormat is the time kubelet appends to a rotated log's name:
// <restart>.log.<time>, UTC. A rotation in the same second as an earlier
// one gets nanoseconds too (<time>.<nanoseconds>, 9 digits), so that no
// rotated file is overwritten and the times in the names only grow.
const RotatedTimeFormat = "20060102-150405"

// rotatedName returns the name the log at path gets when it is rotated at
// now, newest being the time of the newest rotated file there is (zero for
// none): path.<time>, or path.<time>.<ns> if a rotated file of that second
// or later is there, ns being past newest's.
func rotatedName(path string, now, newest time.Time) string {
	now = now.UTC()
	if sec := now.Truncate(time.Second); newest.Before(sec) {
		return path + "." + sec.Format(RotatedTimeFormat)
	}
	if !now.After(newest) {
		now = newest.Add(time.Nanosecond)
	}
	return fmt.Sprintf("%s.%s.%09d", path, now.Format(RotatedTimeFormat), now.Nanosecond())
}

// Rotated returns the rotated files of the log at path, oldest first: the
// files named path.<time> (see [RotatedTimeFormat]). Compressed (.gz)
// files, as kubelet leaves for older ones, are not among them: the agent
// writes none and does not read them.
func Rotated(path string) ([]string, error) {
	names, _, err := rotated(path)
	return names, err
}

// rotated returns Rotated's names and the time of the newest.
func rotated(path string) ([]string, time.Time, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("list rotated logs of %s: %w", path, err)
	}
	type rotated struct {
		name string
		at   time.Time
	}
	var found []rotated
	prefix := filepath.Base(path) + "."
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		stamp, ns, hasNS := strings.Cut(suffix, ".")
		at, err := time.Parse(RotatedTimeFormat, stamp)
		if err != nil {
			continue
		}
		if hasNS {
			n, err := strconv.Atoi(ns)
			if err != nil || len(ns) != 9 || n < 0 {
				continue
			}
			at = at.Add(time.Duration(n))
		}
		found = append(found, rotated{e.Name(), at})
	}
	slices.SortFunc(found, func(a, b rotated) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, len(found))
	var newest time.Time
	for i, r := range found {
		out[i] = filepath.Join(filepath.Dir(path), r.name)
		newest = r.at
	}
	return out, newest, nil
}

// rotateLocked starts a new log file: the current one keeps its content
// under its rotated name, an empty file takes its place, and rotated files
// beyond MaxFiles-1 are removed, oldest first. The path never stops naming a
// file (the old one is linked to its rotated name, then a new one renamed
// over it), so a follower always finds one, and the old file is complete
// once the new one is in place. On failure the File goes on writing the old
// file and tries again after another MaxSize bytes.
func (f *File) rotateLocked() error {
	dir, base := filepath.Split(f.path)
	tmp := filepath.Join(dir, "."+base+".new")
	nf, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("rotate log %s: %w", f.path, err)
	}
	lockWriter(nf) // before it takes the path
	_, newest, err := rotated(f.path)
	if err != nil {
		nf.Close()
		os.Remove(tmp)
		return fmt.Errorf("rotate log %s: %w", f.path, err)
	}
	name := rotatedName(f.path, f.now(), newest)
	if err := os.Link(f.path, name); err != nil {
		nf.Close()
		os.Remove(tmp)
		return fmt.Errorf("rotate log %s: %w", f.path, err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		nf.Close()
		os.Remove(tmp)
		os.Remove(name)
		return fmt.Errorf("rotate log %s: %w", f.path, err)
	}
	f.f.Close()
	f.f, f.size = nf, 0
	return f.pruneLocked()
}

// pruneLocked removes the oldest rotated files beyond MaxFiles-1.
func (f *File) pruneLocked() error {
	old, err := Rotated(f.path)
	if err != nil {
		return err
	}
	keep := max(f.rot.MaxFiles-1, 1)
	var errs []error
	for _, p := range old[:max(len(old)-keep, 0)] {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
