package tensor

import (
	"fmt"
	"strings"
)

// Shape is a tensor's dimensions, outermost first.
type Shape []int

// Numel is the number of elements (1 for a scalar, shape []).
func (s Shape) Numel() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Equal reports whether two shapes are the same.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

func (s Shape) clone() Shape { return append(Shape(nil), s...) }

// Tensor is a contiguous row-major array on one engine's backend, with an
// optional gradient.
type Tensor struct {
	shape Shape
	data  Storage
	e     *Engine
	slot  int // arena slot of data, or -1 when not owned by the arena

	needGrad bool    // a gradient flows to this tensor
	grad     Storage // gradient buffer, same dtype and length as data
	gradSlot int     // arena slot of grad, or -1 (persistent or absent)
}

// Shape returns the tensor's dimensions (do not modify).
func (t *Tensor) Shape() Shape { return t.shape }

// Len is the number of elements.
func (t *Tensor) Len() int { return t.data.Len() }

// DType is the element type.
func (t *Tensor) DType() DType { return t.data.DType() }

// Data is the backend storage.
func (t *Tensor) Data() Storage { return t.data }

// Engine is the engine the tensor belongs to.
func (t *Tensor) Engine() *Engine { return t.e }

// RequiresGrad reports whether a gradient flows to this tensor.
func (t *Tensor) RequiresGrad() bool { return t.needGrad }

// Grad is the gradient buffer, or nil if none was produced.
func (t *Tensor) Grad() Storage { return t.grad }

// Float32s downloads the values to the host.
func (t *Tensor) Float32s() []float32 {
	out := make([]float32, t.Len())
	t.e.B.Download(out, t.data)
	return out
}

// Item returns the only element of a one-element tensor.
func (t *Tensor) Item() float32 {
	if t.Len() != 1 {
		Errorf("Item", "tensor of shape %v has %d elements, want 1", t.shape, t.Len())
	}
	return t.Float32s()[0]
}

func (t *Tensor) String() string {
	return fmt.Sprintf("Tensor%v %v", t.shape, t.DType())
}

// Engine holds a backend, the per-step arena and the autograd tape. It is
// not safe for concurrent use: one goroutine drives a model.
type Engine struct {
	B   Backend
	Act DType // dtype of activations made by operations

	arena  []Storage // per-step allocations; nil entries were freed early
	tape   []func()
	noGrad int

	afterBackward []func() // run at the end of every Backward
	// shares counts, per arena slot, the tensors beyond one that hold it
	// as their gradient (shareGrad); absent means one holder.
	shares map[int]int
}

// NewEngine returns an engine over b whose activations are F32.
func NewEngine(b Backend) *Engine {
	return &Engine{B: b, Act: F32}
}

// alloc takes n elements of dt from the arena.
func (e *Engine) alloc(dt DType, n int) (Storage, int) {
	s := e.B.Alloc(dt, n)
	e.arena = append(e.arena, s)
	return s, len(e.arena) - 1
}

// New returns an uninitialised arena tensor of the activation dtype.
func (e *Engine) New(shape ...int) *Tensor {
	return e.NewOf(e.Act, shape...)
}

// NewOf returns an uninitialised arena tensor of dtype dt.
func (e *Engine) NewOf(dt DType, shape ...int) *Tensor {
	for _, d := range shape {
		if d < 0 {
			Errorf("New", "negative dimension in shape %v", Shape(shape))
		}
	}
	sh := Shape(shape).clone()
	s, slot := e.alloc(dt, sh.Numel())
	return &Tensor{shape: sh, data: s, e: e, slot: slot, gradSlot: -1}
}

// Zeros returns a zero-filled arena tensor of the activation dtype.
func (e *Engine) Zeros(shape ...int) *Tensor {
	t := e.New(shape...)
	e.B.Fill(t.data, 0)
	return t
}

// FromFloat32 uploads host values into a new arena tensor of the activation dtype.
func (e *Engine) FromFloat32(data []float32, shape ...int) *Tensor {
	return e.FromFloat32Of(e.Act, data, shape...)
}

// FromFloat32Of uploads host values into a new arena tensor of dtype dt.
func (e *Engine) FromFloat32Of(dt DType, data []float32, shape ...int) *Tensor {
	if Shape(shape).Numel() != len(data) {
		Errorf("FromFloat32", "%d values for shape %v", len(data), Shape(shape))
	}
	t := e.NewOf(dt, shape...)
	e.B.Upload(t.data, data)
	return t
}

// Persistent uploads host values into storage that outlives the step
// (weights). dt may differ from the activation dtype.
func (e *Engine) Persistent(dt DType, data []float32, shape ...int) *Tensor {
	if Shape(shape).Numel() != len(data) {
		Errorf("Persistent", "%d values for shape %v", len(data), Shape(shape))
	}
	s := e.B.Alloc(dt, len(data))
	e.B.Upload(s, data)
	return &Tensor{shape: Shape(shape).clone(), data: s, e: e, slot: -1, gradSlot: -1}
}

// Wrap makes a tensor over existing storage (for example a view into a flat
// parameter buffer). The engine does not own or free it.
func (e *Engine) Wrap(s Storage, shape ...int) *Tensor {
	if Shape(shape).Numel() != s.Len() {
		Errorf("Wrap", "storage of %d elements for shape %v", s.Len(), Shape(shape))
	}
	return &Tensor{shape: Shape(shape).clone(), data: s, e: e, slot: -1, gradSlot: -1}
}

// Param marks t as a trainable leaf whose gradient accumulates into grad
// (persistent storage of t's dtype and length, zeroed by the caller).
func (t *Tensor) Param(grad Storage) *Tensor {
	if grad.Len() != t.Len() || grad.DType() != t.DType() {
		Errorf("Param", "gradient buffer %v[%d] for tensor %v", grad.DType(), grad.Len(), t)
	}
	t.needGrad = true
	t.grad = grad
	t.gradSlot = -1
	return t
}

// Free releases an arena tensor's storage before the end of the step. Use
// it in inference code for large intermediates; the tensor must not be used
// afterwards, and neither may any view of it (Reshape shares storage). Freeing
// a view releases nothing: free the tensor the view was made from.
func (e *Engine) Free(t *Tensor) {
	if t.slot >= 0 && e.arena[t.slot] != nil {
		e.B.Free(e.arena[t.slot])
		e.arena[t.slot] = nil
		t.slot = -1
	}
	t.data = nil
}

// EndStep frees every arena allocation and clears the tape. Tensors made
// during the step must not be used afterwards.
func (e *Engine) EndStep() {
	for i, s := range e.arena {
		if s != nil {
			e.B.Free(s)
			e.arena[i] = nil
		}
	}
	e.arena = e.arena[:0]
	e.tape = e.tape[:0]
	clear(e.shares)
}

// ArenaLive is the number of live arena allocations (for tests and
// memory accounting).
func (e *Engine) ArenaLive() int {
	n := 0
	for _, s := range e.arena {
		if s != nil {
			n++
		}
	}
	return n
}

// release frees arena slots from mark on, except those listed in keep.
func (e *Engine) release(mark int, keep map[int]bool) {
	for i := mark; i < len(e.arena); i++ {
		if e.arena[i] != nil && !keep[i] {
			e.B.Free(e.arena[i])
			e.arena[i] = nil
			delete(e.shares, i)
		}
	}
}
