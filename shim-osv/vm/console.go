package vm

import (
	"bufio"
	"bytes"
	"io"
	"regexp"
	"strconv"
	"sync"
)

// consoleTail is how many of the console's last lines an error carries.
const consoleTail = 20

// returnedRe matches OSv's report of a program's end (with --verbose), which
// the test guest prints too: "program /x returned N".
var returnedRe = regexp.MustCompile(`^program (\S+) returned (-?\d+)$`)

// console copies the guest's serial console to the container's stdout line
// by line, turning OSv's CRLF into LF, remembers the last lines and the last
// exit code the guest reported.
type console struct {
	mu       sync.Mutex
	tail     []string
	code     int
	reported bool
	first    chan struct{} // closed at the first byte of output
	once     sync.Once
}

func newConsole() *console { return &console{first: make(chan struct{})} }

// pump copies r to w until r ends; w may be nil (no stdout). It returns when
// r does. Errors writing to w are ignored: a reader that went away must not
// stop the VM.
func (c *console) pump(r io.Reader, w io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			c.once.Do(func() { close(c.first) })
			text := bytes.TrimRight(line, "\r\n")
			c.record(string(text))
			if w != nil {
				out := append(text, '\n')
				if err != nil && line[len(line)-1] != '\n' {
					out = text // a last line without end stays so
				}
				_, _ = w.Write(out)
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *console) record(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tail = append(c.tail, line)
	if len(c.tail) > consoleTail {
		c.tail = c.tail[len(c.tail)-consoleTail:]
	}
	if m := returnedRe.FindStringSubmatch(line); m != nil {
		if n, err := strconv.Atoi(m[2]); err == nil {
			c.code, c.reported = n, true
		}
	}
}

// exitCode returns the last code the guest reported, and whether it did.
func (c *console) exitCode() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.reported
}

// lastLines returns the console's last lines, oldest first.
func (c *console) lastLines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tail...)
}
