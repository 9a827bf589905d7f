package vm

import (
	"bufio"
	"bytes"
	"io"
	"sync"

	"github.com/containerd/log"

	"github.com/feather-edge/feather/osv"
)

// consoleTail is how many of the console's last lines an error carries.
const consoleTail = 20

// console copies the program's lines of the guest's serial console to the
// container's stdout, turning OSv's CRLF into LF, and sends OSv's own lines
// (its boot, with every environment value in it, its diagnostics, its
// report of the program's end) to the shim's log instead, redacted. It
// remembers the last lines and how the program ended.
type console struct {
	log *log.Entry

	mu     sync.Mutex
	osv    osv.Console
	tail   []string
	first  chan struct{} // closed at the first byte of output
	start  chan struct{} // closed when the program starts
	ended  chan struct{} // closed when the console reports the program's end
	onceF  sync.Once
	onceS  sync.Once
	onceE  sync.Once
	ending *osv.Ending
}

// newConsole returns a console logging to l.
func newConsole(l *log.Entry) *console {
	return &console{log: l,
		first: make(chan struct{}), start: make(chan struct{}), ended: make(chan struct{})}
}

// pump copies r to w until r ends; w may be nil (no stdout). It returns when
// r does. Errors writing to w are ignored: a reader that went away must not
// stop the VM.
func (c *console) pump(r io.Reader, w io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			c.onceF.Do(func() { close(c.first) })
			text := bytes.TrimRight(line, "\r\n")
			if c.record(string(text)) && w != nil {
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

// record classifies a line, remembers it and reports whether it is the
// program's output.
func (c *console) record(line string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	kind := c.osv.Line(line)
	kept := line
	switch kind {
	case osv.Boot, osv.Start:
		kept = osv.Redact(line)
	}
	if kind != osv.Output && c.log != nil {
		c.log.WithField("kind", kindName[kind]).Debug("osv: " + kept)
	}
	c.tail = append(c.tail, kept)
	if len(c.tail) > consoleTail {
		c.tail = c.tail[len(c.tail)-consoleTail:]
	}
	if kind == osv.Start {
		c.onceS.Do(func() { close(c.start) })
	}
	if e := c.osv.End(); e != nil && c.ending == nil {
		c.ending = e
		c.onceE.Do(func() { close(c.ended) })
	}
	return kind == osv.Output
}

var kindName = map[osv.LineKind]string{osv.Boot: "boot", osv.Start: "start", osv.Output: "output", osv.Diagnostic: "diagnostic", osv.End: "end"}

// end returns how the program ended, nil if the console has not said.
func (c *console) end() *osv.Ending {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ending
}

// lastLines returns the console's last lines, oldest first, boot lines
// redacted.
func (c *console) lastLines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tail...)
}

// started reports whether the program has started.
func (c *console) started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.osv.Started()
}
