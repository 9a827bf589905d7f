package logs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
)

// logSet is a container run's log as one sequence of bytes: its rotated
// files, oldest first, then the current file, each as long as it was when
// the set was opened. It is the io.ReaderAt that tailStart scans, so that a
// tail or a line cut into P records reaches across files.
type logSet struct {
	path  string
	files []*os.File // the current file last
	ends  []int64    // cumulative: ends[i] is where files[i] ends in the set
	open  []*os.File // every file opened, for Close (a follower opens more)
}

// openSet opens the log at path and its rotated files. The current file is
// opened first and must exist; rotated files that go away meanwhile are
// passed over, and if the current file is rotated meanwhile, the set ends
// with it (the follower finds what came after).
func openSet(path string) (_ *logSet, retErr error) {
	cur, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	s := &logSet{path: path, open: []*os.File{cur}}
	defer func() {
		if retErr != nil {
			s.Close()
		}
	}()
	curInfo, err := cur.Stat()
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	names, err := Rotated(path)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		s.open = append(s.open, f)
		if fi, err := f.Stat(); err == nil && os.SameFile(fi, curInfo) {
			break // rotated since: newer rotated files come after it
		}
		s.files = append(s.files, f)
	}
	s.files = append(s.files, cur)
	var end int64
	for _, f := range s.files {
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("read log %s: %w", f.Name(), err)
		}
		end += size
		s.ends = append(s.ends, end)
	}
	return s, nil
}

// size is the set's length.
func (s *logSet) size() int64 { return s.ends[len(s.ends)-1] }

// ReadAt reads the set's bytes at off, across files.
func (s *logSet) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for len(p) > 0 {
		i := sort.Search(len(s.ends), func(i int) bool { return s.ends[i] > off })
		if i == len(s.ends) {
			return n, io.EOF
		}
		begin := s.ends[i] - s.fileSize(i)
		chunk := p[:min(int64(len(p)), s.ends[i]-off)]
		m, err := s.files[i].ReadAt(chunk, off-begin)
		n += m
		off += int64(m)
		p = p[m:]
		if err != nil && (m < len(chunk) || !errors.Is(err, io.EOF)) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a file shrank
			}
			return n, err
		}
	}
	return n, nil
}

func (s *logSet) fileSize(i int) int64 {
	if i == 0 {
		return s.ends[0]
	}
	return s.ends[i] - s.ends[i-1]
}

// reader reads the set from start. With follow, the current file is read
// past its length at opening, and on into the files that rotation puts in
// its place, as they grow; without, the set ends where it ended when opened.
func (s *logSet) reader(start int64, follow bool) io.Reader {
	if !follow {
		return io.NewSectionReader(s, start, s.size()-start)
	}
	last := len(s.files) - 1
	begin := s.ends[last] - s.fileSize(last)
	cur := s.files[last]
	_, _ = cur.Seek(max(start-begin, 0), io.SeekStart)
	r := &follower{set: s, f: cur}
	if start < begin {
		r.rotated = io.NewSectionReader(s, start, begin-start)
	}
	return r
}

// Close closes every file the set and its follower opened.
func (s *logSet) Close() error {
	var errs []error
	for _, f := range s.open {
		errs = append(errs, f.Close())
	}
	s.open = nil
	return errors.Join(errs...)
}

// follower reads the current file of a log as it grows. At its end it
// looks whether the file was rotated (path names another file); if so it
// reads what was written to the old file since, then goes on with the file
// that followed it: the next rotated file, or the one at path. io.EOF means
// only "nothing more yet".
type follower struct {
	set     *logSet
	rotated io.Reader // the set's rotated files from the start, read first
	f       *os.File
}

func (r *follower) Read(p []byte) (int, error) {
	if r.rotated != nil {
		n, err := r.rotated.Read(p)
		if errors.Is(err, io.EOF) {
			r.rotated, err = nil, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	for {
		n, err := r.f.Read(p)
		if n > 0 || !errors.Is(err, io.EOF) {
			return n, err
		}
		next, err := r.next()
		if err != nil || next == nil {
			return 0, io.EOF
		}
		// The old file is complete: rotation put the new file in place
		// after the last write to the old one. Read what came since the
		// end seen above before moving on.
		if n, err := r.f.Read(p); n > 0 || !errors.Is(err, io.EOF) {
			next.Close()
			return n, err
		}
		r.set.open = append(r.set.open, next)
		r.f = next
	}
}

// next opens the file that came after r.f, or returns nil if r.f is still
// the one at path (or path is gone, as when the pod's logs are removed).
//
// The file at path is opened before the rotated files are listed: if r.f is
// the newest of them then, no rotation came between, so the file opened is
// the one that took r.f's place. Otherwise its successor is the rotated file
// after it (or, if r.f was removed already, the oldest one left).
func (r *follower) next() (*os.File, error) {
	path := r.set.path
	curInfo, err := r.f.Stat()
	if err != nil {
		return nil, err
	}
	for range 3 { // a rotated file found may be removed before it is opened
		at, err := os.Open(path)
		if err != nil {
			return nil, nil
		}
		if fi, err := at.Stat(); err != nil || os.SameFile(fi, curInfo) {
			at.Close()
			return nil, err
		}
		names, err := Rotated(path)
		if err != nil {
			at.Close()
			return nil, err
		}
		succ := ""
		if len(names) > 0 {
			succ = names[0]
		}
		for i, name := range names {
			if fi, err := os.Stat(name); err == nil && os.SameFile(fi, curInfo) {
				succ = ""
				if i+1 < len(names) {
					succ = names[i+1]
				}
				break
			}
		}
		if succ == "" {
			return at, nil
		}
		at.Close()
		f, err := os.Open(succ)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return f, err
	}
	return nil, nil
}
