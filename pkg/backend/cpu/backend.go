package cpu

import (
	"math"
	"slices"
	"sync"

	"loco/pkg/tensor"
)

// storage is the CPU backend's tensor.Storage: a float32 slice. A view
// shares the slice of the storage it was cut from and is never recycled.
type storage struct {
	data []float32
	view bool
}

func (s *storage) DType() tensor.DType { return tensor.F32 }
func (s *storage) Len() int            { return len(s.data) }

// Backend is the CPU implementation of tensor.Backend. It is safe for use
// by several goroutines at once (each op splits its own work over the
// worker set); the free list is guarded by a mutex.
type Backend struct {
	// Poison, for tests, fills every Alloc with NaN, so that code reading
	// storage it never wrote (an "uninitialised" buffer taken as zero)
	// shows it instead of passing by luck on fresh, zeroed memory.
	Poison bool

	mu   sync.Mutex
	free map[int][][]float32 // freed blocks by exact length
}

var _ tensor.Backend = (*Backend)(nil)

// New returns a CPU backend.
func New() *Backend { return &Backend{free: make(map[int][][]float32)} }

// HostFloat32s is Float32s as a method: loaders that find it (an optional
// interface) read weights straight into the storage.
func (b *Backend) HostFloat32s(s tensor.Storage) []float32 { return Float32s(s) }

// Name reports "cpu".
func (b *Backend) Name() string { return "cpu" }

// Float32s returns the float32 slice underlying s, which must be storage
// made by a CPU backend. Writes to the slice are writes to the tensor.
func Float32s(s tensor.Storage) []float32 {
	if s == nil {
		return nil
	}
	st, ok := s.(*storage)
	if !ok {
		tensor.Errorf("cpu", "storage of type %T was not made by the CPU backend", s)
	}
	return st.data
}

// f32 is Float32s for op arguments: it names the op in its panic.
func f32(op string, s tensor.Storage) []float32 {
	if s == nil {
		return nil
	}
	st, ok := s.(*storage)
	if !ok {
		tensor.Errorf(op, "storage of type %T was not made by the CPU backend", s)
	}
	return st.data
}

// Alloc returns n float32 elements, reusing a freed block of the same
// length when there is one. Its contents are unspecified.
func (b *Backend) Alloc(dt tensor.DType, n int) tensor.Storage {
	if dt != tensor.F32 {
		tensor.Errorf("alloc", "the CPU backend computes in F32; cannot allocate %v storage", dt)
	}
	if n < 0 {
		tensor.Errorf("alloc", "negative length %d", n)
	}
	s := &storage{data: b.get(n)}
	if b.Poison {
		nan := float32(math.NaN())
		for i := range s.data {
			s.data[i] = nan
		}
	}
	return s
}

// get takes a block of length n from the free list or makes one.
func (b *Backend) get(n int) []float32 {
	b.mu.Lock()
	if l := b.free[n]; len(l) > 0 {
		s := l[len(l)-1]
		l[len(l)-1] = nil
		b.free[n] = l[:len(l)-1]
		b.mu.Unlock()
		return s
	}
	b.mu.Unlock()
	return make([]float32, n)
}

// put returns a block to the free list.
func (b *Backend) put(s []float32) {
	if cap(s) == 0 {
		return
	}
	s = s[:cap(s)]
	b.mu.Lock()
	b.free[len(s)] = append(b.free[len(s)], s)
	b.mu.Unlock()
}

// Free returns s to the free list. Freeing a view is a no-op. The storage
// must not be used afterwards; its length becomes 0 so that a later use
// fails the length checks instead of reading recycled memory.
func (b *Backend) Free(s tensor.Storage) {
	if s == nil {
		return
	}
	st, ok := s.(*storage)
	if !ok {
		tensor.Errorf("free", "storage of type %T was not made by the CPU backend", s)
	}
	if st.view || st.data == nil {
		return
	}
	b.put(st.data)
	st.data = nil
}

// Trim drops every cached free block so that the garbage collector can
// return the memory to the system.
func (b *Backend) Trim() {
	b.mu.Lock()
	clear(b.free)
	b.mu.Unlock()
}

// View is elements [off, off+n) of s, sharing its memory.
func (b *Backend) View(s tensor.Storage, off, n int) tensor.Storage {
	d := f32("view", s)
	if off < 0 || n < 0 || off+n > len(d) {
		tensor.Errorf("view", "elements [%d, %d) out of range of storage of length %d", off, off+n, len(d))
	}
	return &storage{data: d[off : off+n : off+n], view: true}
}

// Upload copies src into dst.
func (b *Backend) Upload(dst tensor.Storage, src []float32) {
	d := f32("upload", dst)
	checkLen("upload", "dst", len(d), len(src))
	copy(d, src)
}

// Download copies src into dst.
func (b *Backend) Download(dst []float32, src tensor.Storage) {
	s := f32("download", src)
	checkLen("download", "dst", len(dst), len(s))
	copy(dst, s)
}

// Fill sets every element of dst to v.
func (b *Backend) Fill(dst tensor.Storage, v float32) {
	d := f32("fill", dst)
	if v == 0 {
		clear(d)
		return
	}
	for i := range d {
		d[i] = v
	}
}

// Copy copies src into dst. Both are F32 on this backend, so it is a plain copy.
func (b *Backend) Copy(dst, src tensor.Storage) {
	d, s := f32("copy", dst), f32("copy", src)
	checkLen("copy", "dst", len(d), len(s))
	copy(d, s)
}

// CopyStrided copies (or adds) p.Rows rows of p.Cols elements.
func (b *Backend) CopyStrided(dst, src tensor.Storage, p tensor.StridedCopy) {
	const op = "copy_strided"
	d, s := f32(op, dst), f32(op, src)
	if p.Rows < 0 || p.Cols < 0 || p.DstOff < 0 || p.SrcOff < 0 || p.DstStride < 0 || p.SrcStride < 0 {
		tensor.Errorf(op, "negative parameter in %+v", p)
	}
	if p.Rows == 0 || p.Cols == 0 {
		return
	}
	if need := p.DstOff + (p.Rows-1)*p.DstStride + p.Cols; need > len(d) {
		tensor.Errorf(op, "dst needs %d elements for %+v, has %d", need, p, len(d))
	}
	if need := p.SrcOff + (p.Rows-1)*p.SrcStride + p.Cols; need > len(s) {
		tensor.Errorf(op, "src needs %d elements for %+v, has %d", need, p, len(s))
	}
	parallelFor(p.Rows, p.Cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dr := d[p.DstOff+r*p.DstStride:][:p.Cols]
			sr := s[p.SrcOff+r*p.SrcStride:][:p.Cols]
			if p.Accumulate {
				addTo(dr, sr)
			} else {
				copy(dr, sr)
			}
		}
	})
}

// Sync returns nil: CPU ops complete before they return.
func (b *Backend) Sync() error { return nil }

// checkLen panics with an *OpError when a buffer's length is not want.
func checkLen(op, name string, got, want int) {
	if got != want {
		tensor.Errorf(op, "%s has %d elements, want %d", name, got, want)
	}
}

// checkOpt is checkLen for an optional (nil-able) buffer.
func checkOpt(op, name string, s []float32, want int) {
	if s != nil {
		checkLen(op, name, len(s), want)
	}
}

// checkDims panics unless every dimension is positive.
func checkDims(op string, dims ...int) {
	for _, d := range dims {
		if d <= 0 {
			tensor.Errorf(op, "dimensions %v must be positive", dims)
		}
	}
}

// addTo sets dst[i] += src[i] (vectorised for float32).
func addTo[T float](dst, src []T) {
	if d, ok := asF32(dst); ok && len(d) >= 16 {
		xs, _ := asF32(src)
		axpy32(d, xs, 1)
		return
	}
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// float is the element type of the generic reference loops: they run in
// float32 on the backend and in float64 in the gradient checks.
type float interface{ ~float32 | ~float64 }

// checkShape panics with an *OpError when a buffer of got elements does
// not hold the shape dims. The message is only formatted on failure (the
// dims are copied there, so that they do not escape on the common path).
func checkShape(op, name string, got int, dims ...int) {
	want := 1
	for _, d := range dims {
		want *= d
	}
	if got != want {
		d := slices.Clone(dims)
		tensor.Errorf(op, "%s%v has %d elements, want %d", name, d, got, want)
	}
}
