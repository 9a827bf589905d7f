package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/log"
)

// Options says which part of a log Read shows, and how. Mind that the zero
// Options shows nothing (Tail 0): Tail -1 shows the whole log.
//
// virtual-kubelet's api.ContainerLogOpts maps onto it as follows: Tail 0
// means the tailLines parameter was not given, so it becomes -1 (all lines);
// Since is SinceTime, or now minus SinceSeconds when that is set; LimitBytes,
// Timestamps and Follow carry over. Previous picks the file ([Previous]).
type Options struct {
	// Tail is how many of the last lines to show; negative shows all, 0
	// none (with Follow: only lines written from now on). Lines are logical
	// lines: a line cut into P records counts once.
	Tail int
	// LimitBytes stops the output after this many bytes, timestamps
	// included, cutting the last line short; 0 or less means no limit.
	LimitBytes int
	// Timestamps prefixes each line with the time its first record was
	// written, in TimestampFormat, and a space, as kubelet does.
	Timestamps bool
	// Follow keeps reading lines as they are appended until the context is
	// done or the done channel given to Read is closed.
	Follow bool
	// Since shows only lines whose first record was written at or after
	// it; the zero time shows all. It applies after Tail, as in kubelet.
	Since time.Time
	// Stream, if set, shows only the lines of that stream (Stdout or
	// Stderr), as `kubectl attach` splits a container's output. It applies
	// after Tail: Tail counts the lines of both streams.
	Stream StreamType
}

// pollInterval is how long a follower waits at the end of the file before it
// looks again. Polling costs one read(2) per interval per follower, needs no
// inotify instance (of which a Linux user gets 128 by default, one for each
// `kubectl logs -f` with fsnotify), works on every filesystem and needs no
// dependency; kubelet itself looks again every second even with fsnotify.
// A quarter of a second is below what a person watching a log notices.
var pollInterval = 250 * time.Millisecond

// testHookWait, if set, is called each time a follower waits at the end of
// the file.
var testHookWait func()

// maxJoin is the longest a joined line gets in memory: a stream's line that
// grows past it (a program writing megabytes without a newline) is written
// out in pieces of this size, the way kubelet writes every P record at once,
// and the rest of the line follows without a timestamp.
const maxJoin = 1 << 20

// errLimit ends a read that has written LimitBytes.
var errLimit = errors.New("byte limit reached")

// Read writes the log file at path to w as `kubectl logs` shows it: the
// content of each logical line and a newline, in the order the lines were
// completed, the P records of a line joined with the records of the same
// stream that complete it. A line still unended at the end of the log (the
// last output of a container that did not end it with a newline) is written
// last, without a newline. Lines that do not parse are skipped. opts says
// which lines to show and how.
//
// Without Follow, Read shows the log as it is when Read opens it and returns
// nil. With Follow it goes on showing the lines appended after that, until
// ctx is done (it returns ctx's error) or done is closed: done says the file
// is complete (the container's streams are closed), so Read shows what is
// left and returns nil. A nil done follows until ctx is done. Read also
// returns nil once it has written opts.LimitBytes, and the first error from
// w otherwise.
//
// A rotated log ([OpenRotating]) reads as one: its rotated files, oldest
// first, then the one at path, so that Tail and Since reach into rotated
// files, and Follow goes on into the file that rotation puts at path.
func Read(ctx context.Context, path string, opts Options, done <-chan struct{}, w io.Writer) error {
	set, err := openSet(path)
	if err != nil {
		return err
	}
	defer set.Close()
	return read(ctx, set, opts, done, w)
}

// NewReader opens the log file at path and returns a reader of what [Read]
// would write: a goroutine reads the file into a pipe as the returned reader
// is read, so a virtual-kubelet provider's GetContainerLogs can return it as
// it is. Where the reader starts (opts.Tail) is taken from the log as it is
// when NewReader returns: with Tail 0, the reader shows exactly what is
// appended after that (kubectl attach). A file that cannot be opened is an
// error here, not in the reader.
// The reader ends with io.EOF where Read would return nil and with Read's
// error otherwise. The caller must Close it; Close stops the goroutine, even
// one that follows, and returns once it has closed the file.
func NewReader(ctx context.Context, path string, opts Options, done <-chan struct{}) (io.ReadCloser, error) {
	set, err := openSet(path)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	j, start, err := begin(set, opts, pw)
	if err != nil {
		set.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &pipeReader{PipeReader: pr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer set.Close()
		pw.CloseWithError(j.read(ctx, set, start, done))
	}()
	return r, nil
}

type pipeReader struct {
	*io.PipeReader
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has closed the file
}

// Close stops the goroutine and waits for it, so that the file is closed
// when Close returns.
func (r *pipeReader) Close() error {
	r.cancel()
	err := r.PipeReader.Close()
	<-r.done
	return err
}

func read(ctx context.Context, set *logSet, opts Options, done <-chan struct{}, w io.Writer) error {
	j, start, err := begin(set, opts, w)
	if err != nil {
		return err
	}
	return j.read(ctx, set, start, done)
}

// begin returns the joiner that writes set's lines to w and the offset in
// set where it starts, as opts says.
func begin(set *logSet, opts Options, w io.Writer) (*joiner, int64, error) {
	var (
		start int64
		err   error
	)
	j := &joiner{opts: opts, out: w}
	if opts.LimitBytes > 0 {
		j.out = &limitWriter{w: w, left: opts.LimitBytes}
	}
	if opts.Tail >= 0 {
		if start, j.skip, err = tailStart(set, set.size(), opts.Tail); err != nil {
			return nil, 0, fmt.Errorf("read log %s: %w", set.path, err)
		}
	}
	return j, start, nil
}

// read copies set's lines from offset start; see Read.
func (j *joiner) read(ctx context.Context, set *logSet, start int64, done <-chan struct{}) error {
	err := j.copy(ctx, set.reader(start, j.opts.Follow), set.path, j.opts.Follow, done)
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

// joiner turns records into the lines Read writes.
type joiner struct {
	opts    Options
	out     io.Writer
	skip    int        // lines still to drop (see tailStart)
	pending [2]partial // by streamIndex
	seq     int        // counts lines begun, to flush pending lines in order
	buf     []byte
}

// partial is a stream's line that has P records and no F record yet.
type partial struct {
	ts      time.Time // of its first record
	seq     int
	content []byte
	begun   bool // part of it was written already (it grew past maxJoin)
}

// copy reads records from src and writes their lines. With follow it waits
// at the end of src for more until ctx is done or done is closed.
func (j *joiner) copy(ctx context.Context, src io.Reader, path string, follow bool, done <-chan struct{}) error {
	var (
		r       = bufio.NewReaderSize(src, 64<<10)
		carry   []byte // a record longer than r's buffer, or unterminated at the end
		tick    *time.Ticker
		last    = !follow // done was closed: the next end is the end
		skipped int
	)
	defer func() {
		if tick != nil {
			tick.Stop()
		}
		if skipped > 0 {
			log.G(ctx).WithField("path", path).Debugf("skipped %d malformed log lines", skipped)
		}
	}()
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		line, err := r.ReadSlice('\n')
		switch {
		case err == nil:
			if len(carry) > 0 {
				carry = append(carry, line...)
				line = carry
			}
			if err := j.record(line[:len(line)-1], &skipped); err != nil {
				return err
			}
			carry = carry[:0]
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			carry = append(carry, line...)
			continue
		case err != io.EOF:
			return fmt.Errorf("read log %s: %w", path, err)
		}
		// At the end of what is there; an unterminated record may follow
		// when a writer is halfway through it.
		carry = append(carry, line...)
		if last {
			if len(carry) > 0 {
				if err := j.record(carry, &skipped); err != nil {
					return err
				}
			}
			return j.flush()
		}
		if tick == nil {
			tick = time.NewTicker(pollInterval)
		}
		if testHookWait != nil {
			testHookWait()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			last = true
		case <-tick.C:
		}
	}
}

// record handles one line of the file.
func (j *joiner) record(line []byte, skipped *int) error {
	rec, err := parseRecord(line)
	if err != nil {
		*skipped++
		return nil
	}
	p := &j.pending[streamIndex(rec.stream)]
	if len(p.content) == 0 && !p.begun {
		p.ts, p.seq = rec.ts, j.seq
		j.seq++
	}
	p.content = append(p.content, rec.content...)
	if rec.partial {
		if j.skip == 0 && len(p.content) >= maxJoin {
			if err := j.write(p, false); err != nil {
				return err
			}
			p.begun = true
			p.content = p.content[:0]
		}
		return nil
	}
	defer p.reset()
	if j.skip > 0 {
		j.skip--
		return nil
	}
	return j.write(p, true)
}

// flush writes the lines no F record ended, oldest first, each but the last
// with a newline.
func (j *joiner) flush() error {
	a, b := &j.pending[0], &j.pending[1]
	if b.seq < a.seq {
		a, b = b, a
	}
	for _, p := range []*partial{a, b} {
		if len(p.content) == 0 {
			continue
		}
		eol := p == a && len(b.content) > 0
		if err := j.write(p, eol); err != nil {
			return err
		}
		p.reset()
	}
	return nil
}

// write writes p's content, with a timestamp if it starts the line, and with
// a newline if eol.
func (j *joiner) write(p *partial, eol bool) error {
	if p.ts.Before(j.opts.Since) {
		return nil
	}
	if s := j.opts.Stream; s != "" && p != &j.pending[streamIndex(s)] {
		return nil
	}
	b := j.buf[:0]
	if j.opts.Timestamps && !p.begun {
		b = p.ts.UTC().AppendFormat(b, TimestampFormat)
		b = append(b, ' ')
	}
	b = append(b, p.content...)
	if eol {
		b = append(b, '\n')
	}
	j.buf = b
	_, err := j.out.Write(b)
	return err
}

func (p *partial) reset() {
	p.content = p.content[:0]
	p.begun = false
	if cap(p.content) > 4*MaxLine {
		p.content = nil
	}
}

// limitWriter writes up to left bytes to w, then fails with errLimit.
type limitWriter struct {
	w    io.Writer
	left int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= n
	if err == nil && l.left == 0 {
		err = errLimit
	}
	return n, err
}
