package tensor

// The tape is a list of closures, one per operation whose output needs a
// gradient, run in reverse by Backward. Each closure reads its output's
// gradient and adds into its inputs' gradients; afterwards the output's
// gradient buffer is freed (it has been consumed).

// recording reports whether operations record backward steps.
func (e *Engine) recording() bool { return e.noGrad == 0 }

// NoGrad runs fn without recording backward steps (inference).
func (e *Engine) NoGrad(fn func()) {
	e.noGrad++
	defer func() { e.noGrad-- }()
	fn()
}

// RequireGrad marks a non-parameter tensor (an input) as needing its
// gradient; after Backward, Grad holds it.
func (t *Tensor) RequireGrad() *Tensor {
	t.needGrad = true
	return t
}

// track reports whether y must record a backward step, marking it as
// needing a gradient if so.
func (e *Engine) track(y *Tensor, inputs ...*Tensor) bool {
	if !e.recording() {
		return false
	}
	for _, x := range inputs {
		if x != nil && x.needGrad {
			y.needGrad = true
			return true
		}
	}
	return false
}

// push records the backward half of the operation that produced y. back
// receives y's gradient and must add into the gradients of y's inputs.
func (e *Engine) push(y *Tensor, back func(gy Storage)) {
	e.tape = append(e.tape, func() {
		if y.grad == nil {
			return // no gradient reached y
		}
		back(y.grad)
		e.dropGrad(y)
	})
}

// gradOf returns t's gradient buffer for an operation to add into,
// allocating a zeroed one in the arena.
func (e *Engine) gradOf(t *Tensor) Storage {
	if t.grad == nil {
		s, slot := e.alloc(t.DType(), t.Len())
		e.B.Fill(s, 0)
		t.grad, t.gradSlot = s, slot
	}
	e.own(t)
	return t.grad
}

// gradOut returns t's gradient buffer for an operation that can either
// overwrite or add into all of it: beta is 0 for a fresh, uninitialised
// buffer (overwrite, no zero-fill) and 1 for an existing one (add).
func (e *Engine) gradOut(t *Tensor) (Storage, float32) {
	if t.grad != nil {
		e.own(t)
		return t.grad, 1
	}
	s, slot := e.alloc(t.DType(), t.Len())
	t.grad, t.gradSlot = s, slot
	return s, 0
}

// passGrad hands y's gradient gy to x, for operations whose backward is
// the identity (reshape, same-dtype cast, a same-shape add): when x has no
// gradient yet it takes over y's buffer (no copy, no zero-fill), otherwise
// gy is added into it.
func (e *Engine) passGrad(x, y *Tensor, gy Storage) {
	if x.grad == nil && y.grad == gy && gy.DType() == x.DType() && gy.Len() == x.Len() {
		x.grad, x.gradSlot = y.grad, y.gradSlot
		y.grad, y.gradSlot = nil, -1
		return
	}
	e.accumGrad(x, gy, 1)
}

// shareGrad is passGrad for a second input with the same identity
// backward (the other operand of a same-shape add): when x has no gradient
// yet it holds gy jointly with y, without a copy; whichever holder is about
// to write into a shared buffer first takes a private copy (own). In a
// residual block, the branch's gradient is read by the branch's backward
// before anything adds into the skip path's, so no copy is ever made.
func (e *Engine) shareGrad(x, y *Tensor, gy Storage) {
	if x.grad == nil && y.grad == gy && y.gradSlot >= 0 && gy.DType() == x.DType() && gy.Len() == x.Len() {
		if e.shares == nil {
			e.shares = map[int]int{}
		}
		x.grad, x.gradSlot = gy, y.gradSlot
		e.shares[y.gradSlot]++
		return
	}
	e.accumGrad(x, gy, 1)
}

// own gives t a gradient buffer no other tensor holds, copying a shared
// one, before an operation writes into it.
func (e *Engine) own(t *Tensor) {
	if t.gradSlot < 0 || e.shares[t.gradSlot] == 0 {
		return
	}
	e.unshare(t.gradSlot)
	s, slot := e.alloc(t.DType(), t.Len())
	e.B.Copy(s, t.grad)
	t.grad, t.gradSlot = s, slot
}

// unshare drops one extra holder of slot.
func (e *Engine) unshare(slot int) {
	if e.shares[slot]--; e.shares[slot] == 0 {
		delete(e.shares, slot)
	}
}

// accumGrad adds alpha·src into x's gradient; a missing gradient is
// written directly (one op instead of a zero-fill and an add). src may
// have another dtype than x only when alpha is 1.
func (e *Engine) accumGrad(x *Tensor, src Storage, alpha float32) {
	if x.grad == nil {
		s, slot := e.alloc(x.DType(), x.Len())
		switch {
		case src.DType() != x.DType():
			e.B.Copy(s, src)
		default:
			e.B.Scale(s, src, alpha)
		}
		x.grad, x.gradSlot = s, slot
		return
	}
	if x.gradSlot >= 0 && e.shares[x.gradSlot] > 0 && src.DType() == x.DType() && alpha == 1 {
		// A shared buffer: write the sum into a private one (one op, not
		// a copy and an add).
		e.unshare(x.gradSlot)
		s, slot := e.alloc(x.DType(), x.Len())
		e.B.Binary(OpAdd, s, x.grad, src, Broadcast{Inner: 1, BLen: x.Len()})
		x.grad, x.gradSlot = s, slot
		return
	}
	e.own(x)
	if src.DType() == x.DType() {
		e.B.Axpy(x.grad, src, alpha)
		return
	}
	tmp, slot := e.alloc(x.DType(), x.Len())
	e.B.Copy(tmp, src)
	e.B.Axpy(x.grad, tmp, alpha)
	e.B.Free(tmp)
	e.arena[slot] = nil
}

// dropGrad frees an intermediate's consumed gradient (or, when another
// tensor holds it too, lets go of it).
func (e *Engine) dropGrad(t *Tensor) {
	if t.gradSlot >= 0 && e.shares[t.gradSlot] > 0 {
		e.unshare(t.gradSlot)
		t.grad, t.gradSlot = nil, -1
		return
	}
	if t.gradSlot >= 0 {
		if s := e.arena[t.gradSlot]; s != nil {
			e.B.Free(s)
			e.arena[t.gradSlot] = nil
		}
		t.grad, t.gradSlot = nil, -1
	}
}

// concurrentMaxFlops bounds the work of each half of a backward step (an
// input gradient and a weight gradient) that both may run at the same
// time: below it a backend's GEMMs stay on one thread each, so running
// the two halves side by side is what uses the other cores.
const concurrentMaxFlops = 1 << 22

// concurrentBackend is the optional Backend method both uses: run fns at
// the same time and return when all have returned, re-raising a panic of
// any of them on the caller. Backends without it (or whose ops may not
// overlap, like a device stream) run the halves one after another.
type concurrentBackend interface{ Concurrently(fns ...func()) }

// both runs a and b, concurrently when small and the backend offers it.
// Neither may touch the arena: gradient buffers are allocated before.
func (e *Engine) both(small bool, a, b func()) {
	if c, ok := e.B.(concurrentBackend); ok && small {
		c.Concurrently(a, b)
		return
	}
	a()
	b()
}

// Backward propagates from a one-element loss whose gradient is seed (1,
// or the loss scale in mixed precision), then clears the tape. Parameter
// gradients accumulate; call it once per micro-batch.
func (e *Engine) Backward(loss *Tensor, seed float32) {
	if loss.Len() != 1 {
		Errorf("Backward", "loss has shape %v, want one element", loss.shape)
	}
	if !loss.needGrad {
		Errorf("Backward", "loss does not depend on any tensor that requires a gradient")
	}
	e.B.Fill(e.gradOf(loss), seed)
	e.runTape(e.tape)
	e.tape = e.tape[:0]
	for _, fn := range e.afterBackward {
		fn()
	}
}

// AfterBackward registers fn to run at the end of every Backward, once the
// tape has run: for example to fold gradients gathered in a low-precision
// buffer into the master gradients.
func (e *Engine) AfterBackward(fn func()) { e.afterBackward = append(e.afterBackward, fn) }

func (e *Engine) runTape(tape []func()) {
	for i := len(tape) - 1; i >= 0; i-- {
		tape[i]()
		tape[i] = nil
	}
}

// Checkpoint runs fn(in) without keeping its intermediate activations: they
// are recomputed during the backward pass (gradient checkpointing). fn must
// be deterministic and must reach parameters only through closures whose
// values do not change between forward and backward.
func (e *Engine) Checkpoint(fn func(in []*Tensor) *Tensor, in ...*Tensor) *Tensor {
	if !e.recording() {
		return fn(in)
	}
	// Forward: record into a scratch tape only to learn whether the output
	// needs a gradient, then drop the intermediates.
	mark := len(e.arena)
	saved := e.tape
	e.tape = nil
	out := fn(in)
	e.tape = saved
	if out.slot < mark {
		out = e.copyOf(out)
	}
	e.release(mark, map[int]bool{out.slot: true})
	if !out.needGrad {
		return out
	}
	y := out
	e.push(y, func(gy Storage) {
		// The recomputed output takes gy as an unowned buffer (slot -1)
		// that ops inside fn may write into: it must be y's alone.
		e.own(y)
		gy = y.grad
		for _, x := range in {
			if x.needGrad {
				e.gradOf(x)
			}
		}
		mark := len(e.arena)
		saved := e.tape
		e.tape = nil
		det := make([]*Tensor, len(in))
		for i, x := range in {
			det[i] = &Tensor{shape: x.shape, data: x.data, e: e, slot: -1,
				needGrad: x.needGrad, grad: x.grad, gradSlot: -1}
		}
		out2 := fn(det)
		sub := e.tape
		e.tape = saved
		if out2.needGrad {
			out2.grad, out2.gradSlot = gy, -1
			e.runTape(sub)
		}
		e.release(mark, nil)
	})
	return y
}

// copyOf copies t into a fresh arena tensor with the same shape.
func (e *Engine) copyOf(t *Tensor) *Tensor {
	y := e.NewOf(t.DType(), t.shape...)
	e.B.Copy(y.data, t.data)
	y.needGrad = t.needGrad
	return y
}
