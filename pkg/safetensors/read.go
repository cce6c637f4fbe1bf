package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"

	"loco/pkg/half"
)

// File is an open safetensors file. Its methods may be called from several
// goroutines at once, but not concurrently with Close.
type File struct {
	path   string
	r      io.ReaderAt // used when data is nil
	data   []byte      // the whole file when memory-mapped
	mapped bool        // data is a mapping (Release may drop its pages)
	closer func() error
	hdr    *header
	names  []string
	closed bool
}

// Open opens and validates the safetensors file at path. The file is
// memory-mapped where the system allows it and read with ReadAt otherwise.
// Tensor data is read only when asked for. A mapped file must not be
// truncated by another process while it is open (reads would fault).
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		fd.Close()
		return nil, &FormatError{Path: path, Msg: "not a regular file"}
	}
	if data, unmap, err := mmapFile(fd, st.Size()); err == nil {
		// The mapping stays valid after the descriptor is closed.
		fd.Close()
		f, err := newFile(path, nil, data, st.Size())
		if err != nil {
			unmap()
			return nil, err
		}
		f.closer, f.mapped = unmap, true
		return f, nil
	}
	f, err := newFile(path, fd, nil, st.Size())
	if err != nil {
		fd.Close()
		return nil, err
	}
	f.closer = fd.Close
	return f, nil
}

// NewReader parses and validates the safetensors data of the given size
// in r. name identifies it in errors. Close on the result does not close r.
func NewReader(r io.ReaderAt, size int64, name string) (*File, error) {
	return newFile(name, r, nil, size)
}

func newFile(path string, r io.ReaderAt, data []byte, size int64) (*File, error) {
	var prefix []byte
	if data != nil {
		prefix = data
	} else {
		// Read the length, then the header.
		var lenBuf [8]byte
		if size >= 8 {
			if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
				return nil, fmt.Errorf("safetensors: %s: reading the header length: %w", path, err)
			}
			n := binary.LittleEndian.Uint64(lenBuf[:])
			if n <= MaxHeaderSize && int64(n) <= size-8 {
				prefix = make([]byte, 8+n)
				if _, err := r.ReadAt(prefix, 0); err != nil {
					return nil, fmt.Errorf("safetensors: %s: reading the header: %w", path, err)
				}
			}
		}
		if prefix == nil {
			prefix = lenBuf[:min(size, 8)] // parseHeader reports what is wrong
		}
	}
	hdr, err := parseHeader(path, prefix, size)
	if err != nil {
		return nil, err
	}
	return &File{
		path:  path,
		r:     r,
		data:  data,
		hdr:   hdr,
		names: slices.Sorted(maps.Keys(hdr.tensors)),
	}, nil
}

// Close releases the file. Reading after Close returns an error.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.closer != nil {
		return f.closer()
	}
	return nil
}

// Path returns the name the file was opened with.
func (f *File) Path() string { return f.path }

// Names returns the tensor names, sorted byte-wise.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Info returns the description of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	ti, ok := f.hdr.tensors[name]
	if ok {
		ti.Shape = slices.Clone(ti.Shape)
	}
	return ti, ok
}

// Metadata returns a copy of the "__metadata__" map (empty when absent).
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.hdr.metadata))
	maps.Copy(m, f.hdr.metadata)
	return m
}

// HeaderSize returns N, the length of the JSON header in bytes; the data
// section starts at 8+N.
func (f *File) HeaderSize() int64 { return f.hdr.size }

func (f *File) errorf(name, format string, args ...any) error {
	return &FormatError{Path: f.path, Tensor: name, Msg: fmt.Sprintf(format, args...)}
}

func (f *File) info(name string) (TensorInfo, error) {
	if f.closed {
		return TensorInfo{}, f.errorf(name, "file is closed")
	}
	ti, ok := f.hdr.tensors[name]
	if !ok {
		return TensorInfo{}, f.errorf(name, "no such tensor")
	}
	return ti, nil
}

// chunkSize bounds the temporary buffer of a converting read that goes
// through ReadAt; it is a multiple of every dtype size.
const chunkSize = 1 << 20

// eachChunk calls fn on the tensor's bytes, in order, in pieces that hold
// whole elements: the mapped bytes in one piece, or chunks read with ReadAt.
// off is the element index of the first element of b.
func (f *File) eachChunk(name string, ti TensorInfo, fn func(b []byte, off int)) error {
	if f.data != nil {
		fn(f.data[ti.Offset:ti.Offset+ti.Size], 0)
		return nil
	}
	es := int64(ti.DType.Size())
	buf := make([]byte, min(ti.Size, chunkSize))
	for done := int64(0); done < ti.Size; {
		b := buf[:min(ti.Size-done, chunkSize)]
		if _, err := f.r.ReadAt(b, ti.Offset+done); err != nil {
			return f.errorf(name, "reading %d bytes at offset %d: %v", len(b), ti.Offset+done, err)
		}
		fn(b, int(done/es))
		done += int64(len(b))
	}
	return nil
}

// Release tells the system that the tensor's bytes will not be read again
// soon, so that a mapped file's pages holding them leave the process's
// resident memory (they stay in the page cache; reading the tensor again
// maps them back). Loading a model tensor by tensor and releasing each
// keeps the mapped file from adding its whole size to the peak RSS. It does
// nothing for a file read through ReadAt, or for an unknown name.
func (f *File) Release(name string) {
	if !f.mapped || f.closed {
		return
	}
	ti, err := f.info(name)
	if err != nil {
		return
	}
	adviseDontNeed(f.data, ti.Offset, ti.Offset+ti.Size)
}

// ReadRaw returns a copy of the tensor's bytes as stored: little-endian,
// row-major.
func (f *File) ReadRaw(name string) ([]byte, error) {
	ti, err := f.info(name)
	if err != nil {
		return nil, err
	}
	out := make([]byte, ti.Size)
	err = f.eachChunk(name, ti, func(b []byte, off int) { copy(out[off*ti.DType.Size():], b) })
	return out, err
}

// ReadFloat32 returns the tensor's values as float32. F32, F16 and BF16
// convert exactly; F64 rounds to nearest. Other dtypes are an error.
func (f *File) ReadFloat32(name string) ([]float32, error) {
	ti, err := f.info(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, ti.NumElements())
	return out, f.ReadFloat32Into(name, out)
}

// ReadFloat32Into is ReadFloat32 into dst, whose length must equal the
// tensor's element count. Through ReadAt it needs at most 1 MiB of
// temporary memory, so a large checkpoint loads into preallocated
// parameters without a second copy.
func (f *File) ReadFloat32Into(name string, dst []float32) error {
	ti, err := f.info(name)
	if err != nil {
		return err
	}
	if n := ti.NumElements(); len(dst) != n {
		return f.errorf(name, "has %d elements (%s %v), destination has %d", n, ti.DType, ti.Shape, len(dst))
	}
	var conv func(dst []float32, b []byte)
	switch ti.DType {
	case F32:
		conv = func(dst []float32, b []byte) {
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		}
	case F16, BF16:
		widen := half.F16sToF32s
		if ti.DType == BF16 {
			widen = half.BF16sToF32s
		}
		var u16 [4096]uint16
		conv = func(dst []float32, b []byte) {
			for len(dst) > 0 {
				n := min(len(dst), len(u16))
				for i := range n {
					u16[i] = binary.LittleEndian.Uint16(b[2*i:])
				}
				widen(dst[:n], u16[:n])
				dst, b = dst[n:], b[2*n:]
			}
		}
	case F64:
		conv = func(dst []float32, b []byte) {
			for i := range dst {
				dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
			}
		}
	default:
		return f.errorf(name, "dtype %s is not a float type", ti.DType)
	}
	es := ti.DType.Size()
	return f.eachChunk(name, ti, func(b []byte, off int) {
		conv(dst[off:off+len(b)/es], b)
	})
}

// ReadInt64 returns the tensor's values as int64. Integer dtypes convert
// exactly (a U64 value above MaxInt64 is an error), BOOL gives 0 or 1.
// Float dtypes are an error.
func (f *File) ReadInt64(name string) ([]int64, error) {
	ti, err := f.info(name)
	if err != nil {
		return nil, err
	}
	var conv func(b []byte) int64
	switch ti.DType {
	case I64, U64:
		conv = func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }
	case I32:
		conv = func(b []byte) int64 { return int64(int32(binary.LittleEndian.Uint32(b))) }
	case U32:
		conv = func(b []byte) int64 { return int64(binary.LittleEndian.Uint32(b)) }
	case I16:
		conv = func(b []byte) int64 { return int64(int16(binary.LittleEndian.Uint16(b))) }
	case U16:
		conv = func(b []byte) int64 { return int64(binary.LittleEndian.Uint16(b)) }
	case I8:
		conv = func(b []byte) int64 { return int64(int8(b[0])) }
	case U8:
		conv = func(b []byte) int64 { return int64(b[0]) }
	case BOOL:
		conv = func(b []byte) int64 {
			if b[0] != 0 {
				return 1
			}
			return 0
		}
	default:
		return nil, f.errorf(name, "dtype %s is not an integer type", ti.DType)
	}
	out := make([]int64, ti.NumElements())
	es := ti.DType.Size()
	err = f.eachChunk(name, ti, func(b []byte, off int) {
		for i := 0; i < len(b)/es; i++ {
			out[off+i] = conv(b[i*es:])
		}
	})
	if err != nil {
		return nil, err
	}
	if ti.DType == U64 {
		for i, v := range out {
			if v < 0 {
				return nil, f.errorf(name, "element %d = %d does not fit in int64", i, uint64(v))
			}
		}
	}
	return out, nil
}
