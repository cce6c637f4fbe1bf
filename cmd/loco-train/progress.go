package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"loco/internal/cli"
	"loco/pkg/train"
)

// trainProgress is the progress bar of a run on stderr, redrawn in place
// after every update:
//
//	steps  37% |███████▍            | 50/136 [02:10<03:45,  2.61s/it] epoch 2/4 loss 0.1234
//
// The rate counts the updates of this process only (a resumed run does not
// credit the steps done before) and the ETA is the remaining updates at
// that rate. It follows --progress as internal/cli's progress does: shown
// on a terminal (auto), always, or never (a nil *trainProgress does
// nothing).
type trainProgress struct {
	w                   io.Writer
	first, total, steps int // step at start, planned updates, updates done
	epochs, epoch       int
	loss                float64
	start               time.Time
	now                 func() time.Time
	width               int // bar cells
	mu                  sync.Mutex
	shown               bool
}

func newTrainProgress(mode cli.ProgressMode, w io.Writer, first, total, epochs int) *trainProgress {
	switch mode {
	case cli.ProgressNever:
		return nil
	case cli.ProgressAuto:
		if !cli.IsTerminal(w) {
			return nil
		}
	}
	p := &trainProgress{w: w, first: first, total: total, steps: first, epochs: epochs, now: time.Now, width: 24}
	p.start = p.now()
	return p
}

// update records an optimizer update and redraws the line.
func (p *trainProgress) update(u train.Update) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps, p.epoch, p.loss = u.Step, u.Epoch, u.AvgLoss
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
	p.shown = true
}

// clear erases the line so that a note can be printed; the next update
// draws it again.
func (p *trainProgress) clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// finish leaves the last line on the screen.
func (p *trainProgress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s\x1b[K\n", p.line())
	p.shown = false
}

// line formats the bar: percentage, bar, steps, elapsed<ETA, rate, epoch, loss.
func (p *trainProgress) line() string {
	frac := 0.0
	if p.total > 0 {
		frac = min(1, float64(p.steps)/float64(p.total))
	}
	cells := frac * float64(p.width)
	full := int(cells)
	bar := strings.Repeat("█", full)
	if full < p.width {
		parts := []string{"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"}
		bar += parts[int((cells-float64(full))*8)]
		bar += strings.Repeat(" ", p.width-full-1)
	}
	el := p.now().Sub(p.start)
	done := p.steps - p.first
	rate, eta := "  ?it/s", "?"
	if done > 0 && el > 0 {
		per := el.Seconds() / float64(done) // seconds per update
		if per <= 1 {
			rate = fmt.Sprintf("%5.2fit/s", 1/per)
		} else {
			rate = fmt.Sprintf("%5.2fs/it", per)
		}
		eta = clock(time.Duration(per * float64(p.total-p.steps) * float64(time.Second)))
	}
	s := fmt.Sprintf("steps %3.0f%% |%s| %d/%d [%s<%s, %s]", 100*frac, bar, p.steps, p.total, clock(el), eta, rate)
	if p.epoch > 0 {
		s += fmt.Sprintf(" epoch %d/%d", p.epoch, p.epochs)
	}
	if p.steps > p.first {
		s += fmt.Sprintf(" loss %.4f", p.loss)
	}
	return s
}

// clock writes d as mm:ss or h:mm:ss, as tqdm does.
func clock(d time.Duration) string {
	sec := int(d.Round(time.Second).Seconds())
	if sec >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	}
	return fmt.Sprintf("%02d:%02d", sec/60, sec%60)
}
