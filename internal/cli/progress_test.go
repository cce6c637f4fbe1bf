package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Rate adds units per second and the ETA; without it the line is as before.
func TestProgressRate(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	p := NewProgress(ProgressAlways, &buf, "encode", 10)
	p.now = func() time.Time { return now }
	p.Rate("images")
	if got := p.line(); !strings.HasPrefix(got, "encode: 0/10 ? images/s ETA ?") {
		t.Errorf("before any item: %q", got)
	}
	now = now.Add(4 * time.Second)
	p.Add(2) // 0.5 images/s, 8 to go: 16 s
	if !strings.Contains(buf.String(), "\rencode: 2/10 0.50 images/s ETA 00:16\x1b[K") {
		t.Errorf("after 2 in 4 s: %q", buf.String())
	}
	now = now.Add(3596 * time.Second)
	p.done = 3 // 3 in 3600 s, 7 to go: 8400 s
	if got := p.line(); !strings.HasPrefix(got, "encode: 3/10 0.00 images/s ETA 2:20:00") {
		t.Errorf("slow: %q", got)
	}
	var nilp *Progress
	if nilp.Rate("x") != nil {
		t.Error("Rate on nil")
	}
}

// A warning printed while the progress line shows goes on its own line
// above it, and the progress line is drawn again after it.
func TestWarningAboveProgress(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(ProgressAlways, &buf, "work", 4)
	rep := NewReporter("tool", &buf)
	rep.Progress = p
	rep.Warnf("before any progress")
	p.Add(1)
	rep.Warnf("bad input %d", 7)
	p.Add(3)
	p.Finish()
	got := buf.String()
	want := "tool: warning: before any progress\n\rwork: 1/4\r\x1b[Ktool: warning: bad input 7\n\rwork: 1/4\rwork: 4/4\rwork: 4/4\n"
	if got != want {
		t.Errorf("output\n%q\nwant\n%q", got, want)
	}
}
