// Package progress shows the progress of blob transfers: on a terminal, a
// bar per blob redrawn in place; elsewhere (a log, a pipe, CI), one plain
// line per blob when it is done. Hand-written rather than a library: it is
// a few dozen lines, and it needs to know about skipped ("exists") and
// resumed blobs, which generic bars do not.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bars tracks transfers by id. All methods are safe for concurrent use and
// do nothing on a nil *Bars.
type Bars struct {
	w    io.Writer
	tty  bool
	verb string

	mu    sync.Mutex
	order []string
	bars  map[string]*bar
	drawn int // lines drawn last time, on a terminal
	stop  chan struct{}
	done  chan struct{}
}

type bar struct {
	label    string
	n, total int64
	status   string // "" while running
}

// New returns Bars writing to w; tty selects redrawn bars. verb names the
// transfer in plain lines ("pushed", "pulled").
func New(w io.Writer, tty bool, verb string) *Bars {
	b := &Bars{w: w, tty: tty, verb: verb, bars: map[string]*bar{}, stop: make(chan struct{}), done: make(chan struct{})}
	if tty {
		go b.loop()
	} else {
		close(b.done)
	}
	return b
}

func (b *Bars) loop() {
	defer close(b.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.mu.Lock()
			b.draw()
			b.mu.Unlock()
		case <-b.stop:
			return
		}
	}
}

// Start begins (or, after a failed try, restarts) the transfer id of total
// bytes, shown as label.
func (b *Bars) Start(id, label string, total int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.bars[id]; !ok {
		b.order = append(b.order, id)
	}
	b.bars[id] = &bar{label: label, total: total}
}

// Set says that n bytes of id are done (a resumed transfer starts above 0).
func (b *Bars) Set(id string, n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if x, ok := b.bars[id]; ok {
		x.n = n
	}
}

// Done ends id with a status: "done", "exists" (nothing had to be sent),
// "failed".
func (b *Bars) Done(id, status string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	x, ok := b.bars[id]
	if !ok || x.status != "" {
		return
	}
	x.status = status
	if status == "done" {
		x.n = x.total
	}
	if !b.tty {
		word := b.verb
		if status != "done" {
			word = status
		}
		fmt.Fprintf(b.w, "%-8s %s (%s)\n", word, x.label, Bytes(x.total))
	}
}

// Stop draws the final state and stops redrawing. Call it once, when the
// transfers are over.
func (b *Bars) Stop() {
	if b == nil {
		return
	}
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tty {
		b.draw()
	}
}

// draw redraws every bar in place; b.mu is held.
func (b *Bars) draw() {
	var sb strings.Builder
	if b.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", b.drawn)
	}
	for _, id := range b.order {
		x := b.bars[id]
		sb.WriteString("\x1b[2K")
		sb.WriteString(line(x))
		sb.WriteByte('\n')
	}
	b.drawn = len(b.order)
	io.WriteString(b.w, sb.String())
}

const width = 30

func line(x *bar) string {
	frac := 1.0
	if x.total > 0 {
		frac = min(float64(x.n)/float64(x.total), 1)
	}
	fill := int(frac * width)
	status := x.status
	if status == "" {
		status = fmt.Sprintf("%3.0f%%", frac*100)
	}
	return fmt.Sprintf("%-24s [%s%s] %10s / %-10s %s", x.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), Bytes(x.n), Bytes(x.total), status)
}

// Bytes renders n bytes in binary units ("512 B", "1.5 MiB").
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
