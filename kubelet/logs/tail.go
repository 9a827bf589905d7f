package logs

import (
	"bytes"
	"fmt"
	"io"
)

// tailBlock is how many bytes tailStart reads from the file at a time.
const tailBlock = 32 << 10

// tailStart finds where to start reading the first size bytes of a log to
// show its last n logical lines (n >= 0). A logical line is a stream's run of
// P records and the F record that ends it, or, at the end, a run of P records
// that nothing has ended yet (the line a running container is writing, or
// the last output of one that exited without a newline).
//
// Because the two streams interleave, reading from start can also complete
// lines that are not among the last n: a line of one stream may begin after
// a line of the other that is shown. skip is how many of those there are;
// they are always the first lines completed after start, and the caller
// drops them. Malformed lines are passed over, as the reader skips them.
func tailStart(r io.ReaderAt, size int64, n int) (start int64, skip int, err error) {
	const (
		after    = iota // no record of the stream seen yet (reading backwards)
		shown           // the stream's current line is one of the last n
		excluded        // the stream's records from here back are not shown
	)
	var (
		state   [2]int
		lines   int
		dropped []int64 // offsets of F records of lines not shown
	)
	start = size
	s := &backScanner{r: r, off: size}
	for lines < n || state[0] == shown || state[1] == shown {
		line, off, ok, err := s.prev()
		if err != nil {
			return 0, 0, fmt.Errorf("tail: %w", err)
		}
		if !ok {
			break
		}
		rec, err := parseRecord(line)
		if err != nil {
			continue
		}
		i := streamIndex(rec.stream)
		switch {
		case !rec.partial || state[i] == after:
			// Going backwards, this record is the end of a new line of
			// its stream (an F, or the last P of an unended line).
			if lines < n {
				lines++
				state[i] = shown
				start = off
			} else {
				state[i] = excluded
				if !rec.partial {
					dropped = append(dropped, off)
				}
			}
		case state[i] == shown:
			start = off
		}
	}
	for _, off := range dropped {
		if off >= start {
			skip++
		}
	}
	return start, skip, nil
}

func streamIndex(s StreamType) int {
	if s == Stderr {
		return 1
	}
	return 0
}

// backScanner yields the lines of r's first off bytes from the last to the
// first. The final newline of the region ends its last line; a region that
// does not end with one has an unterminated last line.
type backScanner struct {
	r    io.ReaderAt
	off  int64  // where buf starts in r
	buf  []byte // r[off:end], end being where the next line returned ends
	init bool
	done bool
}

// prev returns the line before the ones already returned, without its
// newline, and its offset; ok is false once the first line was returned. The
// line is valid until the next call.
func (s *backScanner) prev() (line []byte, off int64, ok bool, err error) {
	if !s.init {
		s.init = true
		if err := s.fill(); err != nil {
			return nil, 0, false, err
		}
		if len(s.buf) == 0 {
			s.done = true
		} else if s.buf[len(s.buf)-1] == '\n' {
			s.buf = s.buf[:len(s.buf)-1]
		}
	}
	for !s.done {
		if i := bytes.LastIndexByte(s.buf, '\n'); i >= 0 {
			line = s.buf[i+1:]
			s.buf = s.buf[:i]
			return line, s.off + int64(i) + 1, true, nil
		}
		if s.off == 0 {
			s.done = true
			return s.buf, 0, true, nil
		}
		if err := s.fill(); err != nil {
			return nil, 0, false, err
		}
	}
	return nil, 0, false, nil
}

// fill prepends the block before off to buf.
func (s *backScanner) fill() error {
	from := max(s.off-tailBlock, 0)
	b := make([]byte, int(s.off-from), int(s.off-from)+len(s.buf))
	if _, err := s.r.ReadAt(b, from); err != nil {
		return err
	}
	s.buf = append(b, s.buf...)
	s.off = from
	return nil
}
