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

// Linear is y = x·Wᵀ + b. Extra, when set, adds a trained delta (a LoCon
// module) computed from the same input.
type Linear struct {
	Key     string // module key, e.g. "model.diffusion_model.time_embed.0"
	In, Out int
	W, B    *tensor.Tensor // [Out, In], [Out] or nil
	Extra   func(x *tensor.Tensor) *tensor.Tensor
	LowRank LowRank
}

// LowRank, when set on a layer, adds scale·up(h) to its output, where h is
// what the function computes from the layer's input (the down projection
// of a LoCon module) and up is [Out, r] (or [Out, r, 1, 1]); the layer
// folds the scale and the sum into its GEMMs (tensor.LinearLowRank,
// tensor.Conv2DLowRank). A nil h adds nothing (a module skipped by module
// dropout). Extra, if also set, is added after.
type LowRank func(x *tensor.Tensor) (h, up *tensor.Tensor, scale float32)

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
	var y *tensor.Tensor
	if l.LowRank != nil {
		if h, up, s := l.LowRank(x); h != nil {
			y = tensor.LinearLowRank(x, l.W, l.B, h, up, s)
		}
	}
	if y == nil {
		y = tensor.Linear(x, l.W, l.B)
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
	Extra           func(x *tensor.Tensor) *tensor.Tensor
	LowRank         LowRank
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
	var y *tensor.Tensor
	if c.LowRank != nil {
		if h, up, s := c.LowRank(x); h != nil {
			y = tensor.Conv2DLowRank(x, c.W, c.B, c.Stride, c.Pad, h, up, s)
		}
	}
	if y == nil {
		y = tensor.Conv2D(x, c.W, c.B, c.Stride, c.Pad)
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
