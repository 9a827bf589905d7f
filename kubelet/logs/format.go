package logs

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// StreamType names the output stream a record came from.
type StreamType string

// The two streams a container writes.
const (
	Stdout StreamType = "stdout"
	Stderr StreamType = "stderr"
)

// MaxLine is the most content bytes one record holds; a longer line is cut
// into several records. It is the default of containerd's CRI plugin
// (max_container_log_line_size), whose logs kubelet reads.
const MaxLine = 16 * 1024

// TimestampFormat is the format of the timestamps Read adds with
// Options.Timestamps: RFC 3339 with fixed-width nanoseconds, as kubelet
// writes them, so that prefixed lines align and sort.
const TimestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

const (
	tagPartial = 'P'
	tagFull    = 'F'
	// recordTime is how the writer formats a record's time; parsing
	// accepts any RFC 3339 time (time.RFC3339 parses fractions too).
	recordTime = time.RFC3339Nano
)

// record is one parsed line of a log file.
type record struct {
	ts      time.Time
	stream  StreamType
	partial bool
	content []byte // aliases the parsed line
}

var errMalformed = errors.New("malformed log record")

// parseRecord parses one line of a log file, without its newline:
// "<time> <stream> <tag> <content>". As kubelet does, the tag may carry more
// ':'-separated parts after the first, and any first part other than "P"
// counts as a full line, so that tags added later still read.
func parseRecord(line []byte) (record, error) {
	var r record
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return r, fmt.Errorf("%w: no timestamp", errMalformed)
	}
	t, err := time.Parse(time.RFC3339, string(ts))
	if err != nil {
		return r, fmt.Errorf("%w: timestamp %q", errMalformed, ts)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return r, fmt.Errorf("%w: no stream", errMalformed)
	}
	switch StreamType(stream) {
	case Stdout:
		r.stream = Stdout
	case Stderr:
		r.stream = Stderr
	default:
		return r, fmt.Errorf("%w: stream %q", errMalformed, stream)
	}
	tag, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok || len(tag) == 0 {
		return r, fmt.Errorf("%w: no tag", errMalformed)
	}
	first, _, _ := bytes.Cut(tag, []byte{':'})
	r.ts = t
	r.partial = len(first) == 1 && first[0] == tagPartial
	r.content = content
	return r, nil
}

// appendRecord appends one record, newline included, to b.
func appendRecord(b []byte, ts time.Time, stream StreamType, tag byte, content []byte) []byte {
	b = ts.AppendFormat(b, recordTime)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, ' ', tag, ' ')
	b = append(b, content...)
	return append(b, '\n')
}
