package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Output is a destination named on the command line: "-" (or "") is
// stdout, anything else a file that is written under a temporary name in the
// same directory and renamed into place by Commit. A run that fails calls
// Abort (or never commits), so no half-written file is left under the final
// name.
type Output struct {
	*bufio.Writer
	name string
	tmp  *os.File // nil for stdout
	done bool
}

// CreateOutput opens name for writing ("-" or "" means stdout).
func CreateOutput(name string, stdout io.Writer) (*Output, error) {
	if name == "" || name == "-" {
		return &Output{Writer: bufio.NewWriterSize(stdout, 1<<16), name: "-"}, nil
	}
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create output %s: %w", name, err)
	}
	return &Output{Writer: bufio.NewWriterSize(f, 1<<16), name: name, tmp: f}, nil
}

// Name is the final name ("-" for stdout).
func (o *Output) Name() string { return o.name }

// Commit flushes and, for a file, syncs, closes and renames it into place.
func (o *Output) Commit() error {
	if o.done {
		return fmt.Errorf("output %s: already committed or aborted", o.name)
	}
	o.done = true
	if err := o.Flush(); err != nil {
		o.remove()
		return fmt.Errorf("write %s: %w", o.name, err)
	}
	if o.tmp == nil {
		return nil
	}
	if err := o.tmp.Sync(); err != nil {
		o.remove()
		return fmt.Errorf("write %s: %w", o.name, err)
	}
	if err := o.tmp.Close(); err != nil {
		o.remove()
		return fmt.Errorf("write %s: %w", o.name, err)
	}
	// CreateTemp makes the file 0600; outputs are ordinary files.
	if err := os.Chmod(o.tmp.Name(), 0o644); err != nil {
		o.remove()
		return fmt.Errorf("write %s: %w", o.name, err)
	}
	if err := os.Rename(o.tmp.Name(), o.name); err != nil {
		o.remove()
		return fmt.Errorf("write %s: %w", o.name, err)
	}
	return nil
}

// Abort discards a file output; for stdout it drops what is still buffered.
// Calling it after Commit does nothing, so it can be deferred.
func (o *Output) Abort() {
	if o.done {
		return
	}
	o.done = true
	if o.tmp != nil {
		o.tmp.Close()
		o.remove()
	}
}

func (o *Output) remove() {
	if o.tmp != nil {
		os.Remove(o.tmp.Name())
	}
}

// OpenInput opens name for reading ("-" or "" means stdin). The returned
// close function is safe to call for stdin.
func OpenInput(name string, stdin io.Reader) (io.Reader, func() error, error) {
	if name == "" || name == "-" {
		return stdin, func() error { return nil }, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}
