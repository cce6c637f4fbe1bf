package vae

import (
	"fmt"

	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// release frees the intermediates ts once out, their consumer, is known to
// need no gradient: then no backward step refers to them. Callers pass only
// tensors that they made themselves and will not use again.
func release(out *tensor.Tensor, ts ...*tensor.Tensor) {
	if out.RequiresGrad() {
		return
	}
	for _, t := range ts {
		out.Engine().Free(t)
	}
}

// ResBlock is LDM's ResnetBlock without a time embedding:
// out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))).
type ResBlock struct {
	Norm1    *nn.GroupNorm
	Conv1    *nn.Conv2d // 3×3, In→Out
	Norm2    *nn.GroupNorm
	Conv2    *nn.Conv2d // 3×3, Out→Out
	Shortcut *nn.Conv2d // nin_shortcut, 1×1, only when In ≠ Out
}

func newResBlock(b *nn.Builder, name string, in, out int) *ResBlock {
	s := b.Sub(name)
	r := &ResBlock{
		Norm1: nn.NewGroupNorm(s, "norm1", Groups, in, Eps),
		Conv1: nn.NewConv2d(s, "conv1", in, out, 3, 1, 1),
		Norm2: nn.NewGroupNorm(s, "norm2", Groups, out, Eps),
		Conv2: nn.NewConv2d(s, "conv2", out, out, 3, 1, 1),
	}
	if in != out {
		r.Shortcut = nn.NewConv2d(s, "nin_shortcut", in, out, 1, 1, 0)
	}
	return r
}

// Forward maps x [N,In,H,W] to [N,Out,H,W]. x is left alone.
func (r *ResBlock) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := r.Norm1.ForwardSiLU(x)
	h2 := r.Conv1.Forward(h) // [N,Out,H,W]
	release(h2, h)
	h = r.Norm2.ForwardSiLU(h2)
	release(h, h2)
	h2 = r.Conv2.Forward(h)
	release(h2, h)
	sc := x
	if r.Shortcut != nil {
		sc = r.Shortcut.Forward(x)
	}
	out := tensor.Add(sc, h2)
	release(out, h2)
	if sc != x {
		release(out, sc)
	}
	return out
}

// AttnBlock is LDM's single-head self-attention over the H·W positions,
// with 1×1 convolutions for q, k, v and proj_out:
// out = x + proj_out(softmax(q kᵀ/√C) v).
type AttnBlock struct {
	Norm          *nn.GroupNorm
	Q, K, V, Proj *nn.Conv2d // 1×1, C→C; Proj is proj_out
}

func newAttnBlock(b *nn.Builder, name string, c int) *AttnBlock {
	s := b.Sub(name)
	return &AttnBlock{
		Norm: nn.NewGroupNorm(s, "norm", Groups, c, Eps),
		Q:    nn.NewConv2d(s, "q", c, c, 1, 1, 0),
		K:    nn.NewConv2d(s, "k", c, c, 1, 1, 0),
		V:    nn.NewConv2d(s, "v", c, c, 1, 1, 0),
		Proj: nn.NewConv2d(s, "proj_out", c, c, 1, 1, 0),
	}
}

// pointwise applies a 1×1 convolution to tokens t [N, HW, C] as the linear
// map it is (weight [Out, In, 1, 1] viewed as [Out, In]).
func pointwise(c *nn.Conv2d, t *tensor.Tensor) *tensor.Tensor {
	return tensor.Linear(t, tensor.Reshape(c.W, c.Out, c.In), c.B)
}

// Forward maps x [N,C,H,W] to x + attention(x), same shape.
func (a *AttnBlock) Forward(x *tensor.Tensor) *tensor.Tensor {
	sh := x.Shape()
	n, c, hw := sh[0], sh[1], sh[2]*sh[3]
	h := a.Norm.Forward(x)
	tok := tensor.Permute(tensor.Reshape(h, n, c, hw), 0, 2, 1) // [N, HW, C]
	release(tok, h)
	q, k, v := pointwise(a.Q, tok), pointwise(a.K, tok), pointwise(a.V, tok)
	release(v, tok)
	o := tensor.Attention(q, k, v, 1, false) // [N, HW, C], scale 1/√C
	release(o, q, k, v)
	p := pointwise(a.Proj, o)
	release(p, o)
	back := tensor.Permute(p, 0, 2, 1) // [N, C, HW]
	release(back, p)
	out := tensor.Add(x, tensor.Reshape(back, sh...))
	release(out, back)
	return out
}

// Mid is the mid section shared by encoder and decoder: block_1, attn_1, block_2.
type Mid struct {
	Block1 *ResBlock
	Attn   *AttnBlock
	Block2 *ResBlock
}

func newMid(b *nn.Builder, c int) *Mid {
	s := b.Sub("mid")
	return &Mid{Block1: newResBlock(s, "block_1", c, c), Attn: newAttnBlock(s, "attn_1", c),
		Block2: newResBlock(s, "block_2", c, c)}
}

// forward runs the mid blocks, consuming h (it may be freed).
func (m *Mid) forward(h *tensor.Tensor) *tensor.Tensor {
	for _, f := range []func(*tensor.Tensor) *tensor.Tensor{m.Block1.Forward, m.Attn.Forward, m.Block2.Forward} {
		h2 := f(h)
		release(h2, h)
		h = h2
	}
	return h
}

// Level is one resolution of the encoder (down.i) or decoder (up.i).
type Level struct {
	Blocks []*ResBlock
	// Resample is the encoder's downsample.conv (3×3, stride 2, after a
	// right/bottom pad) or the decoder's upsample.conv (3×3 after a nearest
	// ×2); nil at the level that keeps its resolution.
	Resample *nn.Conv2d
}

// Encoder maps an image [N, InChannels, H, W] to [N, 2·ZChannels, H/f, W/f].
type Encoder struct {
	ConvIn  *nn.Conv2d
	Down    []*Level // down.0 (full resolution) … down.L-1
	Mid     *Mid
	NormOut *nn.GroupNorm
	ConvOut *nn.Conv2d
}

func newEncoder(b *nn.Builder, cfg Config) *Encoder {
	s := b.Sub("encoder")
	e := &Encoder{ConvIn: nn.NewConv2d(s, "conv_in", cfg.InChannels, cfg.Ch, 3, 1, 1)}
	in := cfg.Ch
	for i, m := range cfg.ChMult {
		lv := s.Sub(fmt.Sprintf("down.%d", i))
		out := cfg.Ch * m
		l := &Level{}
		for j := 0; j < cfg.NumResBlocks; j++ {
			l.Blocks = append(l.Blocks, newResBlock(lv, fmt.Sprintf("block.%d", j), in, out))
			in = out
		}
		// down.i.attn is empty: SD 1.x has no attention outside the mid blocks.
		if i != len(cfg.ChMult)-1 {
			l.Resample = nn.NewConv2d(lv.Sub("downsample"), "conv", in, in, 3, 2, 0)
		}
		e.Down = append(e.Down, l)
	}
	e.Mid = newMid(s, in)
	e.NormOut = nn.NewGroupNorm(s, "norm_out", Groups, in, Eps)
	e.ConvOut = nn.NewConv2d(s, "conv_out", in, 2*cfg.ZChannels, 3, 1, 1)
	return e
}

// Forward runs the encoder; x is left alone.
func (e *Encoder) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := e.ConvIn.Forward(x)
	for _, l := range e.Down {
		for _, blk := range l.Blocks {
			h2 := blk.Forward(h)
			release(h2, h)
			h = h2
		}
		if l.Resample != nil {
			p := tensor.Pad2D(h, 0, 1, 0, 1) // pad (0,1,0,1): right and bottom only
			release(p, h)
			h = l.Resample.Forward(p) // stride 2, padding 0
			release(h, p)
		}
	}
	h = e.Mid.forward(h)
	h2 := e.NormOut.ForwardSiLU(h)
	release(h2, h)
	h = e.ConvOut.Forward(h2)
	release(h, h2)
	return h
}

// Decoder maps [N, ZChannels, h, w] to an image [N, OutCh, h·f, w·f].
type Decoder struct {
	ConvIn  *nn.Conv2d
	Mid     *Mid
	Up      []*Level // up.i as in LDM: up.0 is full resolution and runs last
	NormOut *nn.GroupNorm
	ConvOut *nn.Conv2d
}

func newDecoder(b *nn.Builder, cfg Config) *Decoder {
	s := b.Sub("decoder")
	levels := len(cfg.ChMult)
	in := cfg.Ch * cfg.ChMult[levels-1]
	d := &Decoder{ConvIn: nn.NewConv2d(s, "conv_in", cfg.ZChannels, in, 3, 1, 1)}
	d.Mid = newMid(s, in)
	d.Up = make([]*Level, levels)
	for i := levels - 1; i >= 0; i-- {
		lv := s.Sub(fmt.Sprintf("up.%d", i))
		out := cfg.Ch * cfg.ChMult[i]
		l := &Level{}
		for j := 0; j <= cfg.NumResBlocks; j++ {
			l.Blocks = append(l.Blocks, newResBlock(lv, fmt.Sprintf("block.%d", j), in, out))
			in = out
		}
		if i != 0 {
			l.Resample = nn.NewConv2d(lv.Sub("upsample"), "conv", in, in, 3, 1, 1)
		}
		d.Up[i] = l
	}
	d.NormOut = nn.NewGroupNorm(s, "norm_out", Groups, in, Eps)
	d.ConvOut = nn.NewConv2d(s, "conv_out", in, cfg.OutCh, 3, 1, 1)
	return d
}

// Forward runs the decoder; z is left alone.
func (d *Decoder) Forward(z *tensor.Tensor) *tensor.Tensor {
	h := d.ConvIn.Forward(z)
	h = d.Mid.forward(h)
	for i := len(d.Up) - 1; i >= 0; i-- {
		l := d.Up[i]
		for _, blk := range l.Blocks {
			h2 := blk.Forward(h)
			release(h2, h)
			h = h2
		}
		if l.Resample != nil {
			u := tensor.Upsample2x(h)
			release(u, h)
			h = l.Resample.Forward(u)
			release(h, u)
		}
	}
	h2 := d.NormOut.ForwardSiLU(h)
	release(h2, h)
	h = d.ConvOut.Forward(h2)
	release(h, h2)
	return h
}
