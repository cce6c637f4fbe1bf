package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// LineError is an error in one line of a JSON Lines input.
type LineError struct {
	Name string // input name ("-" for stdin)
	Line int    // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Name, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Reader reads records, one JSON object per line. Blank lines are skipped.
type Reader struct {
	name     string
	br       *bufio.Reader
	line     int
	required []string
}

// NewReader reads records from r; name is used in errors.
func NewReader(r io.Reader, name string) *Reader {
	if name == "" {
		name = "-"
	}
	return &Reader{name: name, br: bufio.NewReaderSize(r, 1<<16)}
}

// Require makes Next fail on a record that lacks one of the named fields
// ("schema" and "path" are always required).
func (r *Reader) Require(fields ...string) { r.required = append(r.required, fields...) }

// Line is the number of the line last read.
func (r *Reader) Line() int { return r.line }

// Next returns the next record, or io.EOF after the last one.
func (r *Reader) Next() (*Record, error) {
	for {
		b, err := r.br.ReadBytes('\n')
		if len(b) == 0 && err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("%s: read: %w", r.name, err)
		}
		r.line++
		if err != nil && err != io.EOF {
			return nil, r.errorf("read: %w", err)
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		return r.parse(b)
	}
}

func (r *Reader) errorf(format string, args ...any) error {
	return &LineError{Name: r.name, Line: r.line, Err: fmt.Errorf(format, args...)}
}

func (r *Reader) parse(b []byte) (*Record, error) {
	if b[0] != '{' {
		return nil, r.errorf("not a JSON object (records are JSON Lines: one object per line): %q", preview(b))
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, r.errorf("invalid JSON: %v", jsonErr(err))
	}
	// A newer schema may have renamed or dropped fields: say so before
	// naming a missing one.
	var version int
	if v, ok := keys["schema"]; ok && json.Unmarshal(v, &version) == nil && version > SchemaVersion {
		return nil, r.errorf("record schema version %d is newer than this loco understands (%d)", version, SchemaVersion)
	}
	for _, f := range append([]string{"schema", "path"}, r.required...) {
		if v, ok := keys[f]; !ok || string(v) == "null" {
			return nil, r.errorf("record lacks the field %q", f)
		}
	}
	rec := new(Record)
	if err := json.Unmarshal(b, rec); err != nil {
		return nil, r.errorf("%v", jsonErr(err))
	}
	if rec.Schema < 1 {
		return nil, r.errorf("invalid schema version %d", rec.Schema)
	}
	if rec.Schema > SchemaVersion {
		return nil, r.errorf("record schema version %d is newer than this loco understands (%d)", rec.Schema, SchemaVersion)
	}
	return rec, nil
}

func jsonErr(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q: JSON %s where %s is expected", te.Field, te.Value, te.Type)
	}
	return err
}

func preview(b []byte) string {
	s := string(b)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// ReadAll reads every record of r.
func ReadAll(r io.Reader, name string, required ...string) ([]*Record, error) {
	rd := NewReader(r, name)
	rd.Require(required...)
	var out []*Record
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

// Writer writes records as JSON Lines.
type Writer struct {
	w io.Writer
}

// NewWriter writes records to w (unbuffered: wrap w in a bufio.Writer).
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes one record on one line, setting its schema version if zero.
func (w *Writer) Write(rec *Record) error {
	if rec.Schema == 0 {
		rec.Schema = SchemaVersion
	}
	b, err := rec.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode record %s: %w", rec.Path, err)
	}
	b = append(b, '\n')
	_, err = w.w.Write(b)
	return err
}
