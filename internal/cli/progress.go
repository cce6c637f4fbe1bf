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

	unit  string // set by Rate: also show unit/s and the ETA
	start time.Time
	now   func() time.Time
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
	return &Progress{w: w, label: label, total: total, now: time.Now}
}

// Rate makes p also show the rate since this call, in unit per second, and
// the time left at that rate, e.g. "encode: 12/48 3.10 images/s ETA 00:12".
// It returns p (nil stays nil).
func (p *Progress) Rate(unit string) *Progress {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	p.unit, p.start = unit, p.now()
	p.mu.Unlock()
	return p
}

// line is the text of the progress line (without the carriage return).
func (p *Progress) line() string {
	s := fmt.Sprintf("%s: %d/%d", p.label, p.done, p.total)
	if p.unit == "" {
		return s
	}
	el := p.now().Sub(p.start).Seconds()
	if p.done == 0 || el <= 0 {
		return s + fmt.Sprintf(" ? %s/s ETA ?\x1b[K", p.unit)
	}
	rate := float64(p.done) / el
	left := time.Duration(float64(max(0, p.total-p.done)) / rate * float64(time.Second)).Round(time.Second)
	sec := int(left.Seconds())
	eta := fmt.Sprintf("%02d:%02d", sec/60, sec%60)
	if sec >= 3600 {
		eta = fmt.Sprintf("%d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	}
	return s + fmt.Sprintf(" %.2f %s/s ETA %s\x1b[K", rate, p.unit, eta)
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
		fmt.Fprintf(p.w, "\r%s", p.line())
	}
}

// Around runs print (which writes whole lines to the same stream) with the
// progress line erased first and drawn again after, so that a warning does
// not share the line with it. A nil Progress just runs print.
func (p *Progress) Around(print func()) {
	if p == nil {
		print()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	drawn := !p.last.IsZero()
	if drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	print()
	if drawn {
		fmt.Fprintf(p.w, "\r%s", p.line())
	}
}

// Finish ends the progress line.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s\n", p.line())
}
