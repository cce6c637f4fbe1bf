package cli

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// ProgressMode is the value of --progress.
type ProgressMode string

// The --progress values.
const (
	ProgressAuto   ProgressMode = "auto"   // only when stderr is a terminal
	ProgressAlways ProgressMode = "always" // even into a file or pipe
	ProgressNever  ProgressMode = "never"
)

// ParseProgress checks a --progress value.
func ParseProgress(s string) (ProgressMode, error) {
	switch m := ProgressMode(s); m {
	case ProgressAuto, ProgressAlways, ProgressNever:
		return m, nil
	}
	return "", Usagef("--progress must be auto, always or never, not %q", s)
}

// Progress prints "label: done/total" updates on one stderr line, at most a
// few times per second. The zero of a disabled Progress (nil) is valid and
// does nothing.
type Progress struct {
	w     io.Writer
	label string
	total int

	mu   sync.Mutex
	done int
	last time.Time
}

// NewProgress returns a Progress for mode, or nil when progress is off
// (mode never, or auto with w not a terminal).
func NewProgress(mode ProgressMode, w io.Writer, label string, total int) *Progress {
	switch mode {
	case ProgressNever:
		return nil
	case ProgressAuto:
		if !IsTerminal(w) {
			return nil
		}
	}
	return &Progress{w: w, label: label, total: total}
}

// SetTotal sets the number of items expected.
func (p *Progress) SetTotal(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.total = n
	p.mu.Unlock()
}

// Add records n more items done.
func (p *Progress) Add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if now := time.Now(); now.Sub(p.last) >= 200*time.Millisecond || p.done == p.total {
		p.last = now
		fmt.Fprintf(p.w, "\r%s: %d/%d", p.label, p.done, p.total)
	}
}

// Finish ends the progress line.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s: %d/%d\n", p.label, p.done, p.total)
}
