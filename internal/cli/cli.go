package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Exit codes shared by every loco command.
const (
	ExitOK    = 0 // success
	ExitError = 1 // the run failed: bad input data, I/O error
	ExitUsage = 2 // bad command line: unknown flag, invalid flag value
)

// UsageError marks an error in the command line (exit code ExitUsage).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Hinted attaches hint lines to an error; they are printed after the error
// line, indented.
type Hinted struct {
	Err   error
	Hints []string
}

func (e *Hinted) Error() string { return e.Err.Error() }
func (e *Hinted) Unwrap() error { return e.Err }

// WithHints wraps err with hint lines.
func WithHints(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return &Hinted{Err: err, Hints: hints}
}

// Reporter writes the diagnostics of one command to stderr, one line each,
// prefixed by the command name. It is safe for concurrent use.
type Reporter struct {
	Tool string // e.g. "loco-scan"
	W    io.Writer
	// Progress, when set, is the progress line on the same stream:
	// warnings and notes are printed above it instead of into it.
	Progress *Progress

	mu       sync.Mutex
	warnings int
}

// NewReporter returns a Reporter for tool writing to w.
func NewReporter(tool string, w io.Writer) *Reporter { return &Reporter{Tool: tool, W: w} }

// Warnf prints "tool: warning: ..." and counts it.
func (r *Reporter) Warnf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings++
	line := fmt.Sprintf("%s: warning: %s\n", r.Tool, oneLine(fmt.Sprintf(format, args...)))
	r.Progress.Around(func() { fmt.Fprint(r.W, line) })
}

// Notef prints "tool: ..." (information, not a warning).
func (r *Reporter) Notef(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := fmt.Sprintf("%s: %s\n", r.Tool, oneLine(fmt.Sprintf(format, args...)))
	r.Progress.Around(func() { fmt.Fprint(r.W, line) })
}

// Printf prints raw text (summaries, tables) to the diagnostic stream.
func (r *Reporter) Printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.W, format, args...)
}

// Warnings returns the number of warnings printed so far.
func (r *Reporter) Warnings() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warnings
}

// Fail prints err as "tool: error: ..." (plus hints) and returns the exit
// code for it: ExitUsage for a *UsageError, ExitError otherwise, ExitOK for
// nil.
func (r *Reporter) Fail(err error) int {
	if err == nil {
		return ExitOK
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.W, "%s: error: %s\n", r.Tool, oneLine(err.Error()))
	var h *Hinted
	if errors.As(err, &h) {
		for _, hint := range h.Hints {
			fmt.Fprintf(r.W, "\t%s\n", hint)
		}
	}
	var u *UsageError
	if errors.As(err, &u) {
		fmt.Fprintf(r.W, "\trun '%s --help' for usage\n", r.Tool)
		return ExitUsage
	}
	return ExitError
}

// oneLine keeps a diagnostic on one line: embedded newlines would break the
// "one line per problem" contract that scripts grep for.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "; ")
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil {
		return false
	}
	return st.Mode()&os.ModeCharDevice != 0
}
