// Package nn holds the layers the SD 1.x models are built from: thin typed
// structs over tensor operations that know their checkpoint keys.
//
// A model is built by walking a Builder: every parameter is declared with
// its full key and shape. With a weight Source the builder loads each
// tensor as it is declared; without one (shape-only mode) it records the
// key list and allocates nothing, which is how the real-size key lists are
// checked without 4 GB of memory.
package nn

import (
	"fmt"

	"loco/pkg/tensor"
)

// Source supplies a parameter tensor by key, checking its shape.
type Source interface {
	Load(key string, shape tensor.Shape) (*tensor.Tensor, error)
}

// ParamSpec is one declared parameter.
type ParamSpec struct {
	Key   string
	Shape tensor.Shape
}

// Builder declares parameters under a key prefix.
type Builder struct {
	prefix string
	st     *buildState
}

type buildState struct {
	src    Source
	params []ParamSpec
	err    error
}

// NewBuilder starts a build with the given root prefix (for example
// "model.diffusion_model."). src nil means shape-only.
func NewBuilder(prefix string, src Source) *Builder {
	return &Builder{prefix: prefix, st: &buildState{src: src}}
}

// Sub is a builder for the child module name ("input_blocks.1.0").
func (b *Builder) Sub(name string) *Builder {
	return &Builder{prefix: b.prefix + name + ".", st: b.st}
}

// Prefix is the key prefix of this builder.
func (b *Builder) Prefix() string { return b.prefix }

// Param declares parameter name with shape and returns it (nil in shape-only
// mode or after an error).
func (b *Builder) Param(name string, shape ...int) *tensor.Tensor {
	key := b.prefix + name
	sh := tensor.Shape(append([]int(nil), shape...))
	b.st.params = append(b.st.params, ParamSpec{Key: key, Shape: sh})
	if b.st.src == nil || b.st.err != nil {
		return nil
	}
	t, err := b.st.src.Load(key, sh)
	if err != nil {
		b.st.err = err
		return nil
	}
	if !t.Shape().Equal(sh) {
		b.st.err = fmt.Errorf("tensor %s has shape %v, want %v", key, t.Shape(), sh)
		return nil
	}
	return t
}

// Params lists every parameter declared so far, in declaration order.
func (b *Builder) Params() []ParamSpec { return b.st.params }

// Err is the first load error.
func (b *Builder) Err() error { return b.st.err }

// Linear is y = x·Wᵀ + b. Adapters (network modules: LoCon, LoHa) and
// Extra, when set, change what it computes (see Adapter).
type Linear struct {
	Key      string // module key, e.g. "model.diffusion_model.time_embed.0"
	In, Out  int
	W, B     *tensor.Tensor // [Out, In], [Out] or nil
	Adapters []*Adapter
	Extra    func(x *tensor.Tensor) *tensor.Tensor // a delta added to the output
}

// Adapter is a trained change of a layer: one network's module. Networks
// append theirs to a layer's Adapters and remove exactly theirs again, in
// any order; several add up.
//
// A weight delta (LoHa) makes the layer run with W + the sum of the
// deltas, as LyCORIS runs LoHa outside its bypass mode. A low-rank branch
// (LoCon) adds scale·up(h) to the output, h computed from the layer's input
// by the adapter (the down projection) and up [Out, r] (or [Out, r, 1, 1]);
// the layer's first branch is folded into its GEMMs (tensor.LinearLowRank,
// tensor.Conv2DLowRank), further ones are added. A nil delta or h means
// nothing this time (a module skipped by module dropout).
type Adapter struct {
	WeightDelta func() *tensor.Tensor
	LowRank     func(x *tensor.Tensor) (h, up *tensor.Tensor, scale float32)
}

// NewLinear declares name.weight and (if bias) name.bias.
func NewLinear(b *Builder, name string, in, out int, bias bool) *Linear {
	s := b.Sub(name)
	l := &Linear{Key: b.prefix + name, In: in, Out: out}
	l.W = s.Param("weight", out, in)
	if bias {
		l.B = s.Param("bias", out)
	}
	return l
}

// Forward applies the layer to x [..., In].
func (l *Linear) Forward(x *tensor.Tensor) *tensor.Tensor {
	w := withDeltas(l.W, l.Adapters)
	y := withBranches(x, l.Adapters, func(h, up *tensor.Tensor, s float32) *tensor.Tensor {
		return tensor.LinearLowRank(x, w, l.B, h, up, s)
	}, func(h, up *tensor.Tensor) *tensor.Tensor { return tensor.Linear(h, up, nil) })
	if y == nil {
		y = tensor.Linear(x, w, l.B)
	}
	if l.Extra != nil {
		y = tensor.Add(y, l.Extra(x))
	}
	return y
}

// Conv2d is a 2-D convolution with square kernel, stride and symmetric padding.
type Conv2d struct {
	Key             string
	In, Out, Kernel int
	Stride, Pad     int
	W, B            *tensor.Tensor // [Out, In, Kernel, Kernel], [Out]
	Adapters        []*Adapter
	Extra           func(x *tensor.Tensor) *tensor.Tensor // a delta added to the output
}

// withDeltas is w plus the adapters' weight deltas.
func withDeltas(w *tensor.Tensor, as []*Adapter) *tensor.Tensor {
	for _, a := range as {
		if a.WeightDelta != nil {
			if d := a.WeightDelta(); d != nil {
				w = tensor.Add(w, d)
			}
		}
	}
	return w
}

// withBranches is the layer's output with the adapters' low-rank branches:
// the first through fused (the base layer with it), the others added as
// scale·up(h) computed by apply; nil when no branch applies this time.
func withBranches(x *tensor.Tensor, as []*Adapter, fused func(h, up *tensor.Tensor, s float32) *tensor.Tensor,
	apply func(h, up *tensor.Tensor) *tensor.Tensor) *tensor.Tensor {
	var y *tensor.Tensor
	for _, a := range as {
		if a.LowRank == nil {
			continue
		}
		h, up, s := a.LowRank(x)
		switch {
		case h == nil:
		case y == nil:
			y = fused(h, up, s)
		default:
			y = tensor.Add(y, tensor.Scale(apply(h, up), s))
		}
	}
	return y
}

// NewConv2d declares name.weight and name.bias.
func NewConv2d(b *Builder, name string, in, out, kernel, stride, pad int) *Conv2d {
	s := b.Sub(name)
	c := &Conv2d{Key: b.prefix + name, In: in, Out: out, Kernel: kernel, Stride: stride, Pad: pad}
	c.W = s.Param("weight", out, in, kernel, kernel)
	c.B = s.Param("bias", out)
	return c
}

// Forward applies the convolution to x [N, In, H, W].
func (c *Conv2d) Forward(x *tensor.Tensor) *tensor.Tensor {
	w := withDeltas(c.W, c.Adapters)
	y := withBranches(x, c.Adapters, func(h, up *tensor.Tensor, s float32) *tensor.Tensor {
		return tensor.Conv2DLowRank(x, w, c.B, c.Stride, c.Pad, h, up, s)
	}, func(h, up *tensor.Tensor) *tensor.Tensor { return tensor.Conv2D(h, up, nil, 1, 0) })
	if y == nil {
		y = tensor.Conv2D(x, w, c.B, c.Stride, c.Pad)
	}
	if c.Extra != nil {
		y = tensor.Add(y, c.Extra(x))
	}
	return y
}

// GroupNorm normalises channel groups; SiLU fuses the activation that
// follows it in ResBlocks.
type GroupNorm struct {
	Key         string
	Groups, C   int
	Eps         float32
	Gamma, Beta *tensor.Tensor
}

// NewGroupNorm declares name.weight and name.bias.
func NewGroupNorm(b *Builder, name string, groups, c int, eps float32) *GroupNorm {
	s := b.Sub(name)
	return &GroupNorm{Key: b.prefix + name, Groups: groups, C: c, Eps: eps,
		Gamma: s.Param("weight", c), Beta: s.Param("bias", c)}
}

// Forward is groupnorm(x).
func (g *GroupNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.GroupNorm(x, g.Gamma, g.Beta, g.Groups, g.Eps, false)
}

// ForwardSiLU is silu(groupnorm(x)), fused.
func (g *GroupNorm) ForwardSiLU(x *tensor.Tensor) *tensor.Tensor {
	return tensor.GroupNorm(x, g.Gamma, g.Beta, g.Groups, g.Eps, true)
}

// LayerNorm normalises the last dim.
type LayerNorm struct {
	Key         string
	Dim         int
	Eps         float32
	Gamma, Beta *tensor.Tensor
}

// NewLayerNorm declares name.weight and name.bias.
func NewLayerNorm(b *Builder, name string, dim int, eps float32) *LayerNorm {
	s := b.Sub(name)
	return &LayerNorm{Key: b.prefix + name, Dim: dim, Eps: eps,
		Gamma: s.Param("weight", dim), Beta: s.Param("bias", dim)}
}

// Forward is layernorm(x).
func (l *LayerNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.LayerNorm(x, l.Gamma, l.Beta, l.Eps)
}

// Embedding is a lookup table [Num, Dim].
type Embedding struct {
	Key      string
	Num, Dim int
	W        *tensor.Tensor
}

// NewEmbedding declares name.weight.
func NewEmbedding(b *Builder, name string, num, dim int) *Embedding {
	return &Embedding{Key: b.prefix + name, Num: num, Dim: dim, W: b.Sub(name).Param("weight", num, dim)}
}

// Forward looks up ids; the result is [len(ids), Dim].
func (m *Embedding) Forward(ids []int32) *tensor.Tensor {
	return tensor.Embedding(m.W, ids)
}
