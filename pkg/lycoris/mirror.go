package lycoris

import "loco/pkg/tensor"

// mirror is a copy of the network's flat F32 parameters in the engine's
// activation dtype (F16 or BF16 on a GPU), with a gradient buffer of the
// same dtype. Modules compute with the mirror's views, so a step casts the
// parameters once (one op over the flat buffer, not two casts per module)
// and gathers the factors' gradients in the low-precision buffer, which
// the end of Backward adds into the F32 gradients in one pass. The
// precision is that of casting each factor where it is used (PyTorch's
// autocast): each factor's gradient is computed once per backward in the
// activation dtype, then accumulated in F32.
type mirror struct {
	dt     tensor.DType
	params tensor.Storage // dt, refreshed from Network.Params when stale
	grads  tensor.Storage // dt, zero between backwards
	tmp    tensor.Storage // F32 scratch for the fold
	of     map[*tensor.Tensor]*tensor.Tensor
	stale  bool
}

// mirrored returns t's view in the mirror of dtype dt, making the mirror
// on first use and refreshing it from the F32 parameters when they may have
// changed. It returns nil when the network already has a mirror of another
// dtype (the engine's activation dtype changed: the caller casts).
func (n *Network) mirrored(t *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	if n.mir == nil {
		n.newMirror(dt)
	}
	mr := n.mir
	if mr.dt != dt {
		return nil
	}
	if mr.stale {
		n.e.B.Copy(mr.params, n.Params)
		mr.stale = false
	}
	return mr.of[t]
}

func (n *Network) newMirror(dt tensor.DType) {
	B := n.e.B
	total := n.Params.Len()
	mr := &mirror{dt: dt, params: B.Alloc(dt, total), grads: B.Alloc(dt, total),
		tmp: B.Alloc(tensor.F32, total), of: map[*tensor.Tensor]*tensor.Tensor{}, stale: true}
	B.Fill(mr.grads, 0)
	for _, m := range n.Modules {
		for _, f := range []*tensor.Tensor{m.Down, m.Mid, m.Up, m.W1a, m.W1b, m.W2a, m.W2b} {
			if f == nil {
				continue
			}
			off, sz := n.offsetOf(f), f.Len()
			mr.of[f] = n.e.Wrap(B.View(mr.params, off, sz), f.Shape()...).Param(B.View(mr.grads, off, sz))
		}
	}
	n.mir = mr
	n.e.AfterBackward(n.foldMirrorGrads)
}

// foldMirrorGrads adds the mirror's gradients into the F32 gradients and
// zeroes them; the parameters are then about to change (an optimizer
// step), so the next use refreshes the mirror.
func (n *Network) foldMirrorGrads() {
	mr := n.mir
	B := n.e.B
	B.Copy(mr.tmp, mr.grads)
	B.Axpy(n.Grads, mr.tmp, 1)
	B.Fill(mr.grads, 0)
	mr.stale = true
}

// Touch tells the network that its parameters were written directly (for
// example a training state restored into Params), so that the next forward
// reads them again.
func (n *Network) Touch() {
	if n.mir != nil {
		n.mir.stale = true
	}
}

// offsetOf is the flat-buffer offset of factor f.
func (n *Network) offsetOf(f *tensor.Tensor) int {
	return n.offsets[f]
}
