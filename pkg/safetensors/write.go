package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"loco/pkg/half"
)

// Tensor is a tensor to be written: its specification and its bytes,
// little-endian and row-major, len(Data) = elements × dtype size.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Spec returns t without its data.
func (t Tensor) Spec() Spec { return Spec{Name: t.Name, DType: t.DType, Shape: t.Shape} }

// FromFloat32 encodes v as a tensor of dtype dt (F32, F16, BF16 or F64;
// F16 and BF16 round to nearest even). len(v) must match shape.
func FromFloat32(name string, dt DType, shape []int, v []float32) (Tensor, error) {
	t := Tensor{Name: name, DType: dt, Shape: shape}
	if n := numElements(shape); n != len(v) {
		return t, &FormatError{Path: "(new tensor)", Tensor: name, Msg: fmt.Sprintf("shape %v has %d elements, got %d values", shape, n, len(v))}
	}
	t.Data = make([]byte, len(v)*dt.Size())
	if err := encodeFloat32(t.Data, dt, v); err != nil {
		return t, &FormatError{Path: "(new tensor)", Tensor: name, Msg: err.Error()}
	}
	return t, nil
}

// FromInt64 encodes v as an I64 tensor. len(v) must match shape.
func FromInt64(name string, shape []int, v []int64) (Tensor, error) {
	t := Tensor{Name: name, DType: I64, Shape: shape}
	if n := numElements(shape); n != len(v) {
		return t, &FormatError{Path: "(new tensor)", Tensor: name, Msg: fmt.Sprintf("shape %v has %d elements, got %d values", shape, n, len(v))}
	}
	t.Data = make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(t.Data[8*i:], uint64(x))
	}
	return t, nil
}

func numElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// encodeFloat32 writes v into b (len(b) = len(v) × dt.Size()) as dt.
func encodeFloat32(b []byte, dt DType, v []float32) error {
	switch dt {
	case F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
	case F16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], half.F32ToF16(x))
		}
	case BF16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], half.F32ToBF16(x))
		}
	case F64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(float64(x)))
		}
	default:
		return fmt.Errorf("cannot encode float32 values as %s", dt)
	}
	return nil
}

// Encode writes a complete safetensors file to w: header, then data.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	l, err := layoutOf("(stream)", tensors, metadata)
	if err != nil {
		return err
	}
	if _, err := w.Write(l.prefix()); err != nil {
		return err
	}
	byName := make(map[string][]byte, len(tensors))
	for _, t := range tensors {
		byName[t.Name] = t.Data
	}
	for _, s := range l.specs {
		if _, err := w.Write(byName[s.Name]); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes tensors and metadata to path atomically (see Create).
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	if _, err := layoutOf(path, tensors, metadata); err != nil {
		return err
	}
	specs := make([]Spec, len(tensors))
	for i, t := range tensors {
		specs[i] = t.Spec()
	}
	w, err := Create(path, specs, metadata)
	if err != nil {
		return err
	}
	for _, t := range tensors {
		if err := w.Write(t.Name, t.Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// layoutOf is newLayout for tensors with data, also checking data sizes.
func layoutOf(path string, tensors []Tensor, metadata map[string]string) (*layout, error) {
	specs := make([]Spec, len(tensors))
	for i, t := range tensors {
		specs[i] = t.Spec()
	}
	l, err := newLayout(path, specs, metadata)
	if err != nil {
		return nil, err
	}
	for _, t := range tensors {
		if int64(len(t.Data)) != l.size[t.Name] {
			return nil, &FormatError{Path: path, Tensor: t.Name, Msg: fmt.Sprintf("has %d bytes of data, %s %v needs %d", len(t.Data), t.DType, t.Shape, l.size[t.Name])}
		}
	}
	return l, nil
}

// Writer streams a safetensors file to disk: Create writes the header from
// the tensors' specifications, Write and WriteFloat32 fill in each
// tensor's data (in any order, each exactly once), and Close makes the
// file appear under its final name. Until Close succeeds the data lives in
// a temporary file in the same directory, which Abort (or a failed Close)
// removes. A Writer is not safe for concurrent use.
type Writer struct {
	path    string
	tmp     *os.File
	l       *layout
	written map[string]bool
	done    bool
}

// Create starts writing the file path with the given tensors and metadata.
func Create(path string, specs []Spec, metadata map[string]string) (*Writer, error) {
	l, err := newLayout(path, specs, metadata)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	w := &Writer{path: path, tmp: tmp, l: l, written: make(map[string]bool, len(specs))}
	if _, err := tmp.Write(l.prefix()); err != nil {
		w.Abort()
		return nil, fmt.Errorf("safetensors: %s: writing the header: %w", path, err)
	}
	return w, nil
}

func (w *Writer) errorf(name, format string, args ...any) error {
	return &FormatError{Path: w.path, Tensor: name, Msg: fmt.Sprintf(format, args...)}
}

// spec checks that name can be written now and returns its spec.
func (w *Writer) spec(name string) (Spec, error) {
	if w.done {
		return Spec{}, w.errorf(name, "writer is closed")
	}
	if _, ok := w.l.size[name]; !ok {
		return Spec{}, w.errorf(name, "not among the tensors given to Create")
	}
	if w.written[name] {
		return Spec{}, w.errorf(name, "written twice")
	}
	return w.l.byName[name], nil
}

// Write writes the named tensor's bytes, little-endian and row-major.
func (w *Writer) Write(name string, data []byte) error {
	s, err := w.spec(name)
	if err != nil {
		return err
	}
	if int64(len(data)) != w.l.size[name] {
		return w.errorf(name, "has %d bytes of data, %s %v needs %d", len(data), s.DType, s.Shape, w.l.size[name])
	}
	if _, err := w.tmp.WriteAt(data, w.dataOffset(name)); err != nil {
		return w.errorf(name, "writing: %v", err)
	}
	w.written[name] = true
	return nil
}

// WriteFloat32 converts v to the named tensor's dtype (F32, F16, BF16 or
// F64) and writes it, through a bounded buffer.
func (w *Writer) WriteFloat32(name string, v []float32) error {
	s, err := w.spec(name)
	if err != nil {
		return err
	}
	if n := numElements(s.Shape); len(v) != n {
		return w.errorf(name, "has %d elements (%s %v), got %d values", n, s.DType, s.Shape, len(v))
	}
	es := s.DType.Size()
	buf := make([]byte, min(len(v), chunkSize/8)*es)
	off := w.dataOffset(name)
	for len(v) > 0 {
		n := min(len(v), len(buf)/es)
		if err := encodeFloat32(buf[:n*es], s.DType, v[:n]); err != nil {
			return w.errorf(name, "%v", err)
		}
		if _, err := w.tmp.WriteAt(buf[:n*es], off); err != nil {
			return w.errorf(name, "writing: %v", err)
		}
		off += int64(n * es)
		v = v[n:]
	}
	w.written[name] = true
	return nil
}

func (w *Writer) dataOffset(name string) int64 {
	return 8 + int64(len(w.l.json)) + w.l.begin[name]
}

// Close checks that every tensor was written, syncs the temporary file and
// renames it to the final path. On any error the temporary file is
// removed and nothing appears under the final name.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	for _, s := range w.l.specs {
		if !w.written[s.Name] {
			w.Abort()
			return w.errorf(s.Name, "never written; file abandoned")
		}
	}
	// Zero-size trailing tensors write nothing; make the size exact anyway.
	err := w.tmp.Truncate(8 + int64(len(w.l.json)) + w.l.dataLen)
	if err == nil {
		err = w.tmp.Chmod(0o644)
	}
	if err == nil {
		err = w.tmp.Sync()
	}
	if cerr := w.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.tmp.Name(), w.path)
	}
	w.done = true
	if err != nil {
		os.Remove(w.tmp.Name())
		return fmt.Errorf("safetensors: %s: %w", w.path, err)
	}
	// Make the rename durable; some file systems cannot sync a directory,
	// which is no reason to fail a write that has already landed.
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort abandons the file: the temporary file is closed and removed. It
// is safe to call after Close, where it does nothing.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}
