package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/log"
)

// flushSize is how many bytes of records a Write gathers before it writes
// them to the file; records are never split across writes.
const flushSize = 64 << 10

// File is one container run's log file, open for writing. Its streams
// ([File.Stream]) may be written from different goroutines at once.
type File struct {
	path string
	now  func() time.Time // the clock for record times; tests replace it

	rot Rotation

	mu      sync.Mutex // guards everything below, and orders writes to f
	f       *os.File
	size    int64  // of f, as written through it
	rotErr  bool   // a rotation failed; logged once
	out     []byte // records gathered for one write to f
	streams []*stream
	err     error // the first failed write to f
	closed  bool
}

// Open opens the log file at path for appending, creating it (mode 0640) and
// its directories (0755) if need be. An agent that reopens the log of a
// container it adopted appends to what is there. The caller closes the File.
// It never rotates the file: see [OpenRotating].
func Open(path string) (*File, error) {
	return OpenRotating(path, Rotation{})
}

// OpenRotating opens the log file at path as Open does, and rotates it as
// rot says (see [Rotation]) while it is written: the writes that would take
// it past rot.MaxSize go to a new file at path, the old one being renamed
// path.<time> (kubelet's names: 0.log, 0.log.20240501-100000), and the
// oldest rotated files are removed so that at most rot.MaxFiles remain.
// Records are never split across files. [Read] reads the rotated files and
// the current one as one log.
func OpenRotating(path string, rot Rotation) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	lockWriter(f)
	if err := endLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return &File{path: path, now: time.Now, rot: rot, f: f, size: fi.Size()}, nil
}

// endLine ends a record that an earlier writer left unterminated (an agent
// killed halfway through a write), so that it does not run into the first
// record written now: readers then skip or show it on its own.
func endLine(f *os.File) error {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
		return err
	}
	if last[0] != '\n' {
		_, err = f.Write([]byte{'\n'})
	}
	return err
}

// Path returns the path the File was opened with.
func (f *File) Path() string { return f.path }

// Stream returns a writer that turns what a container writes to the stream
// s (Stdout or Stderr; anything else panics) into records of the file. It
// buffers output until a newline ends a line ("\r\n" counts as "\n"), writes
// each line as an F record, and cuts a line longer than MaxLine bytes into P
// records of MaxLine bytes and a final F record. A record carries the time of
// the Write (or Close) that wrote it.
//
// Write never blocks on a reader and, once the stream is open, never fails:
// if the file cannot be written the output is dropped, the error logged and
// returned by [File.Close], so that the copy from the container's pipe goes
// on and the container never blocks on a full pipe. Write after Close fails
// with os.ErrClosed.
//
// Close writes output still unterminated as a last P record; it is
// idempotent and does not close the File. Each call returns a new writer; a
// stream need not be closed if the File is (File.Close closes its streams).
func (f *File) Stream(s StreamType) io.WriteCloser {
	if s != Stdout && s != Stderr {
		panic(fmt.Sprintf("logs: unknown stream %q", s))
	}
	st := &stream{file: f, name: s}
	f.mu.Lock()
	f.streams = append(f.streams, st)
	f.mu.Unlock()
	return st
}

// Close closes the streams still open, writing their unterminated output as
// P records, and then the file. It returns the first error the File met
// while writing, if any. Close is idempotent; later calls return nil.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	for _, s := range f.streams {
		s.closeLocked()
	}
	f.closed = true
	err := f.err
	if cerr := f.f.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close log %s: %w", f.path, cerr))
	}
	return err
}

// flushLocked writes the gathered records to the file. A failure is kept
// for Close and logged once.
func (f *File) flushLocked() {
	if len(f.out) == 0 {
		return
	}
	if f.rot.MaxSize > 0 && f.size > 0 && f.size+int64(len(f.out)) > f.rot.MaxSize {
		if err := f.rotateLocked(); err != nil {
			f.size = 0 // try again after another MaxSize bytes
			if !f.rotErr {
				f.rotErr = true
				log.L.WithError(err).WithField("path", f.path).Error("container log not rotated")
			}
		}
	}
	n, err := f.f.Write(f.out)
	f.size += int64(n)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("write log %s: %w", f.path, err)
		log.L.WithError(err).WithField("path", f.path).Error("container output is being dropped")
	}
	f.out = f.out[:0]
}

// stream is one of a File's writers. Its fields are guarded by file.mu.
type stream struct {
	file   *File
	name   StreamType
	line   []byte // output since the last record: no newline, at most MaxLine+1 bytes
	closed bool
}

func (s *stream) Write(p []byte) (int, error) {
	f := s.file
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.closed || f.closed {
		return 0, fmt.Errorf("write %s to log %s: %w", s.name, f.path, os.ErrClosed)
	}
	now := f.now().UTC()
	n := len(p)
	for len(p) > 0 {
		chunk, rest, newline := bytes.Cut(p, []byte{'\n'})
		p = rest
		if !newline {
			s.fill(now, chunk, false)
			continue
		}
		// "\r\n" ends a line as "\n" does; the '\r' may have come in an
		// earlier Write.
		if len(chunk) > 0 {
			chunk = bytes.TrimSuffix(chunk, []byte{'\r'})
		} else if k := len(s.line); k > 0 && s.line[k-1] == '\r' {
			s.line = s.line[:k-1]
		}
		s.fill(now, chunk, true)
		s.record(now, tagFull, s.line)
		s.line = s.line[:0]
	}
	f.flushLocked()
	return n, nil
}

// fill adds b to the stream's pending line and writes P records of MaxLine
// bytes while the line is longer than that, as containerd does: a line of
// exactly MaxLine bytes stays whole. Unless b ends a line (eol), a '\r' just
// past MaxLine is kept back, since a '\n' may follow it.
func (s *stream) fill(now time.Time, b []byte, eol bool) {
	for len(s.line)+len(b) > MaxLine {
		last := s.line
		if len(b) > 0 {
			last = b
		}
		if !eol && len(s.line)+len(b) == MaxLine+1 && last[len(last)-1] == '\r' {
			break
		}
		if len(s.line) >= MaxLine { // a held-back '\r' that no '\n' followed
			s.record(now, tagPartial, s.line[:MaxLine])
			s.line = append(s.line[:0], s.line[MaxLine:]...)
			continue
		}
		need := MaxLine - len(s.line)
		s.line = append(s.line, b[:need]...)
		b = b[need:]
		s.record(now, tagPartial, s.line)
		s.line = s.line[:0]
	}
	s.line = append(s.line, b...)
}

// record gathers one record for the file, writing out what was gathered once
// it is large.
func (s *stream) record(now time.Time, tag byte, content []byte) {
	f := s.file
	f.out = appendRecord(f.out, now, s.name, tag, content)
	if len(f.out) >= flushSize {
		f.flushLocked()
	}
}

func (s *stream) Close() error {
	f := s.file
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		s.closeLocked()
	}
	return nil
}

// closeLocked writes the stream's unterminated output as a P record, as
// containerd does for output that ends without a newline, and closes it.
func (s *stream) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	if len(s.line) > 0 {
		s.record(s.file.now().UTC(), tagPartial, s.line)
		s.line = nil
	}
	s.file.flushLocked()
}
