package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"loco/internal/cli"
	"loco/pkg/train"
)

func TestTrainProgress(t *testing.T) {
	var buf bytes.Buffer
	if p := newTrainProgress(cli.ProgressAuto, &buf, 0, 10, 2); p != nil {
		t.Error("auto progress into a buffer (not a terminal) is on")
	}
	if p := newTrainProgress(cli.ProgressNever, &buf, 0, 10, 2); p != nil {
		t.Error("--progress never gave a progress bar")
	}
	p := newTrainProgress(cli.ProgressAlways, &buf, 2, 10, 2) // resumed at step 2
	now := p.start
	p.now = func() time.Time { return now }
	if l := p.line(); !strings.Contains(l, "2/10") || !strings.Contains(l, "?it/s") {
		t.Errorf("before any update: %q", l)
	}
	// Two updates in 5 s: 2.5 s per update, 6 to go → ETA 15 s.
	now = now.Add(5 * time.Second)
	p.update(train.Update{Step: 3, Epoch: 1, AvgLoss: 0.5})
	p.update(train.Update{Step: 4, Epoch: 2, AvgLoss: 0.25})
	l := p.line()
	for _, want := range []string{" 40% |", "4/10", "[00:05<00:15,  2.50s/it]", "epoch 2/2", "loss 0.2500", "█████████▌"} {
		if !strings.Contains(l, want) {
			t.Errorf("line %q lacks %q", l, want)
		}
	}
	// Fast updates are counted per second.
	now = p.start.Add(500 * time.Millisecond)
	if l := p.line(); !strings.Contains(l, " 4.00it/s") || !strings.Contains(l, "<00:02") {
		t.Errorf("fast rate: %q", l)
	}
	p.clear()
	p.finish()
	out := buf.String()
	if strings.Count(out, "\r") != 4 || !strings.HasSuffix(out, "\n") || !strings.Contains(out, "\r\x1b[K\r") {
		t.Errorf("output %q: want two redraws, one clear, one final line", out)
	}
	if got := clock(3*time.Hour + 2*time.Minute + 5*time.Second); got != "3:02:05" {
		t.Errorf("clock = %q", got)
	}
}
