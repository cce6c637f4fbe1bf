// Package unet is the SD 1.x denoising UNet (CompVis UNetModel with
// SpatialTransformer blocks) on loco's engine. It is built with the
// original LDM loops, so parameter keys come out exactly as in a
// single-file checkpoint under "model.diffusion_model.".
//
// Shapes: x [B, 4, H, W] with H, W multiples of 8 (three downsamplings);
// timesteps [B]; context [B, 77, ContextDim]; the result is ε [B, 4, H, W].
package unet

import (
	"fmt"

	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// Config holds the LDM yaml hyper-parameters (unet_config.params).
type Config struct {
	InChannels           int   `json:"in_channels"`
	OutChannels          int   `json:"out_channels"`
	ModelChannels        int   `json:"model_channels"`
	AttentionResolutions []int `json:"attention_resolutions"`
	NumResBlocks         int   `json:"num_res_blocks"`
	ChannelMult          []int `json:"channel_mult"`
	NumHeads             int   `json:"num_heads"`
	TransformerDepth     int   `json:"transformer_depth"`
	ContextDim           int   `json:"context_dim"`
}

// DefaultConfig is SD 1.x (v1-inference.yaml).
func DefaultConfig() Config {
	return Config{InChannels: 4, OutChannels: 4, ModelChannels: 320,
		AttentionResolutions: []int{4, 2, 1}, NumResBlocks: 2, ChannelMult: []int{1, 2, 4, 4},
		NumHeads: 8, TransformerDepth: 1, ContextDim: 768}
}

// Validate rejects configurations the model cannot build.
func (c Config) Validate() error {
	switch {
	case c.InChannels <= 0 || c.OutChannels <= 0 || c.ModelChannels <= 0:
		return fmt.Errorf("unet: channels must be positive: %+v", c)
	case c.ModelChannels%32 != 0:
		return fmt.Errorf("unet: model_channels %d is not a multiple of 32 (GroupNorm groups)", c.ModelChannels)
	case len(c.ChannelMult) == 0 || c.NumResBlocks <= 0 || c.NumHeads <= 0 || c.TransformerDepth <= 0 || c.ContextDim <= 0:
		return fmt.Errorf("unet: incomplete config %+v", c)
	}
	return nil
}

// Norm eps values (architecture notes of the golden case).
const (
	resEps  = 1e-5 // ResBlocks and the output head
	attnEps = 1e-6 // SpatialTransformer GroupNorm
	lnEps   = 1e-5 // LayerNorms in transformer blocks
	groups  = 32
)

// ResBlock is LDM's ResBlock (dropout 0, no scale-shift norm).
type ResBlock struct {
	Norm1 *nn.GroupNorm // in_layers.0
	Conv1 *nn.Conv2d    // in_layers.2
	Emb   *nn.Linear    // emb_layers.1
	Norm2 *nn.GroupNorm // out_layers.0
	Conv2 *nn.Conv2d    // out_layers.3
	Skip  *nn.Conv2d    // skip_connection (nil when channels match)
}

func newResBlock(b *nn.Builder, in, out, embDim int) *ResBlock {
	r := &ResBlock{
		Norm1: nn.NewGroupNorm(b, "in_layers.0", groups, in, resEps),
		Conv1: nn.NewConv2d(b, "in_layers.2", in, out, 3, 1, 1),
		Emb:   nn.NewLinear(b, "emb_layers.1", embDim, out, true),
		Norm2: nn.NewGroupNorm(b, "out_layers.0", groups, out, resEps),
		Conv2: nn.NewConv2d(b, "out_layers.3", out, out, 3, 1, 1),
	}
	if in != out {
		r.Skip = nn.NewConv2d(b, "skip_connection", in, out, 1, 1, 0)
	}
	return r
}

// Forward: x [B,C,H,W]; embAct = silu(emb) [B, embDim].
func (r *ResBlock) Forward(x, embAct *tensor.Tensor) *tensor.Tensor {
	h := r.Conv1.Forward(r.Norm1.ForwardSiLU(x))
	e := r.Emb.Forward(embAct) // [B, out]
	s := e.Shape()
	h = tensor.Add(h, tensor.Reshape(e, s[0], s[1], 1, 1))
	h = r.Conv2.Forward(r.Norm2.ForwardSiLU(h))
	skip := x
	if r.Skip != nil {
		skip = r.Skip.Forward(x)
	}
	return tensor.Add(skip, h)
}

// Attention is LDM's CrossAttention: no bias on q, k, v; to_out.0 has one.
type Attention struct {
	Heads        int
	Q, K, V, Out *nn.Linear
}

func newAttention(b *nn.Builder, dim, ctxDim, heads int) *Attention {
	return &Attention{Heads: heads,
		Q:   nn.NewLinear(b, "to_q", dim, dim, false),
		K:   nn.NewLinear(b, "to_k", ctxDim, dim, false),
		V:   nn.NewLinear(b, "to_v", ctxDim, dim, false),
		Out: nn.NewLinear(b, "to_out.0", dim, dim, true),
	}
}

// Forward attends from x [B,T,dim] to ctx [B,S,ctxDim] (ctx = x for self-attention).
func (a *Attention) Forward(x, ctx *tensor.Tensor) *tensor.Tensor {
	q, k, v := a.Q.Forward(x), a.K.Forward(ctx), a.V.Forward(ctx)
	return a.Out.Forward(tensor.Attention(q, k, v, a.Heads, false))
}

// TransformerBlock is LDM's BasicTransformerBlock.
type TransformerBlock struct {
	Attn1, Attn2        *Attention
	Norm1, Norm2, Norm3 *nn.LayerNorm
	FFIn                *nn.Linear // ff.net.0.proj (GEGLU, 2·4·dim outputs)
	FFOut               *nn.Linear // ff.net.2 (index 1 is dropout)
}

func newTransformerBlock(b *nn.Builder, dim, ctxDim, heads int) *TransformerBlock {
	inner := 4 * dim
	return &TransformerBlock{
		Attn1: newAttention(b.Sub("attn1"), dim, dim, heads),
		FFIn:  nn.NewLinear(b, "ff.net.0.proj", dim, 2*inner, true),
		FFOut: nn.NewLinear(b, "ff.net.2", inner, dim, true),
		Attn2: newAttention(b.Sub("attn2"), dim, ctxDim, heads),
		Norm1: nn.NewLayerNorm(b, "norm1", dim, lnEps),
		Norm2: nn.NewLayerNorm(b, "norm2", dim, lnEps),
		Norm3: nn.NewLayerNorm(b, "norm3", dim, lnEps),
	}
}

// Forward on tokens x [B,T,dim] with context [B,S,ctxDim].
func (t *TransformerBlock) Forward(x, ctx *tensor.Tensor) *tensor.Tensor {
	h := t.Norm1.Forward(x)
	x = tensor.Add(x, t.Attn1.Forward(h, h))
	x = tensor.Add(x, t.Attn2.Forward(t.Norm2.Forward(x), ctx))
	ff := t.FFOut.Forward(tensor.GEGLU(t.FFIn.Forward(t.Norm3.Forward(x))))
	return tensor.Add(x, ff)
}

// SpatialTransformer is LDM's SpatialTransformer with 1×1 conv projections.
type SpatialTransformer struct {
	Norm    *nn.GroupNorm
	ProjIn  *nn.Conv2d
	Blocks  []*TransformerBlock
	ProjOut *nn.Conv2d
}

func newSpatialTransformer(b *nn.Builder, ch, ctxDim, heads, depth int) *SpatialTransformer {
	s := &SpatialTransformer{
		Norm:   nn.NewGroupNorm(b, "norm", groups, ch, attnEps),
		ProjIn: nn.NewConv2d(b, "proj_in", ch, ch, 1, 1, 0),
	}
	for i := 0; i < depth; i++ {
		s.Blocks = append(s.Blocks, newTransformerBlock(b.Sub(fmt.Sprintf("transformer_blocks.%d", i)), ch, ctxDim, heads))
	}
	s.ProjOut = nn.NewConv2d(b, "proj_out", ch, ch, 1, 1, 0)
	return s
}

// Forward: x [B,C,H,W], ctx [B,S,ctxDim].
func (s *SpatialTransformer) Forward(x, ctx *tensor.Tensor) *tensor.Tensor {
	sh := x.Shape()
	bn, c, hh, ww := sh[0], sh[1], sh[2], sh[3]
	h := s.ProjIn.Forward(s.Norm.Forward(x))
	// Tokens in (h, w) row-major order: [B, C, HW] -> [B, HW, C].
	t := tensor.Permute(tensor.Reshape(h, bn, c, hh*ww), 0, 2, 1)
	for _, blk := range s.Blocks {
		t = blk.Forward(t, ctx)
	}
	h = tensor.Reshape(tensor.Permute(t, 0, 2, 1), bn, c, hh, ww)
	return tensor.Add(s.ProjOut.Forward(h), x)
}

// Block is one entry of input_blocks, middle_block or output_blocks: a
// ResBlock (or the first conv / a downsampler), then optionally a
// SpatialTransformer and an upsampler.
type Block struct {
	Conv *nn.Conv2d // input_blocks.0.0 only
	Res  *ResBlock
	Attn *SpatialTransformer
	Down *nn.Conv2d // ".0.op": conv 3×3 stride 2
	Up   *nn.Conv2d // ".N.conv" after nearest 2× upsampling
	Res2 *ResBlock  // middle block's second ResBlock
}

// Forward runs the block on h. up, when not zero, is the height and width
// an upsampling block's output must have (the next skip connection's): an
// odd size is the nearest 2× upsampling cropped by one row or column,
// which is what PyTorch's nearest interpolation to that size computes
// (diffusers' and sd-scripts' UNets pass the skip's size), so latents need
// not be multiples of 8.
func (b *Block) Forward(h, embAct, ctx *tensor.Tensor, up [2]int) *tensor.Tensor {
	if b.Conv != nil {
		return b.Conv.Forward(h)
	}
	if b.Down != nil {
		return b.Down.Forward(h)
	}
	h = b.Res.Forward(h, embAct)
	if b.Attn != nil {
		h = b.Attn.Forward(h, ctx)
	}
	if b.Res2 != nil {
		h = b.Res2.Forward(h, embAct)
	}
	if b.Up != nil {
		h = b.Up.Forward(upsampleTo(h, up))
	}
	return h
}

// upsampleTo is nearest 2× upsampling of h [N,C,H,W], cropped to size up
// (2H or 2H−1 rows, likewise columns; zero: no crop) — PyTorch's nearest
// interpolation to that size.
func upsampleTo(h *tensor.Tensor, up [2]int) *tensor.Tensor {
	h = tensor.Upsample2x(h)
	sh := h.Shape()
	if up == [2]int{} || up == [2]int{sh[2], sh[3]} {
		return h
	}
	if up[0] > sh[2] || up[1] > sh[3] || up[0] < sh[2]-1 || up[1] < sh[3]-1 {
		tensor.Errorf("UNet", "upsampled %v cannot meet a skip connection of %dx%d", sh, up[0], up[1])
	}
	if up[0] < sh[2] {
		h = tensor.Slice(h, 2, 0, up[0])
	}
	if up[1] < sh[3] {
		h = tensor.Slice(h, 3, 0, up[1])
	}
	return h
}

// UNet is the whole model.
type UNet struct {
	Cfg     Config
	TimeIn  *nn.Linear // time_embed.0
	TimeOut *nn.Linear // time_embed.2 (index 1 is SiLU)
	Input   []*Block
	Middle  *Block
	Output  []*Block
	OutNorm *nn.GroupNorm // out.0
	OutConv *nn.Conv2d    // out.2 (index 1 is SiLU)

	// Checkpoint re-runs each block's forward in the backward pass
	// (gradient checkpointing) instead of keeping its activations.
	Checkpoint bool
}

// New declares the UNet's parameters on b, whose prefix is usually
// "model.diffusion_model.".
func New(b *nn.Builder, cfg Config) (*UNet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mc := cfg.ModelChannels
	emb := 4 * mc
	u := &UNet{Cfg: cfg,
		TimeIn:  nn.NewLinear(b, "time_embed.0", mc, emb, true),
		TimeOut: nn.NewLinear(b, "time_embed.2", emb, emb, true),
	}
	attnAt := map[int]bool{}
	for _, r := range cfg.AttentionResolutions {
		attnAt[r] = true
	}
	st := func(b *nn.Builder, ch int) *SpatialTransformer {
		return newSpatialTransformer(b, ch, cfg.ContextDim, cfg.NumHeads, cfg.TransformerDepth)
	}
	u.Input = append(u.Input, &Block{Conv: nn.NewConv2d(b, "input_blocks.0.0", cfg.InChannels, mc, 3, 1, 1)})
	chans := []int{mc}
	ch, ds := mc, 1
	for level, mult := range cfg.ChannelMult {
		for i := 0; i < cfg.NumResBlocks; i++ {
			bb := b.Sub(fmt.Sprintf("input_blocks.%d", len(u.Input)))
			blk := &Block{Res: newResBlock(bb.Sub("0"), ch, mult*mc, emb)}
			ch = mult * mc
			if attnAt[ds] {
				blk.Attn = st(bb.Sub("1"), ch)
			}
			u.Input = append(u.Input, blk)
			chans = append(chans, ch)
		}
		if level != len(cfg.ChannelMult)-1 {
			bb := b.Sub(fmt.Sprintf("input_blocks.%d.0", len(u.Input)))
			u.Input = append(u.Input, &Block{Down: nn.NewConv2d(bb, "op", ch, ch, 3, 2, 1)})
			chans = append(chans, ch)
			ds *= 2
		}
	}
	mb := b.Sub("middle_block")
	u.Middle = &Block{Res: newResBlock(mb.Sub("0"), ch, ch, emb), Attn: st(mb.Sub("1"), ch),
		Res2: newResBlock(mb.Sub("2"), ch, ch, emb)}
	for level := len(cfg.ChannelMult) - 1; level >= 0; level-- {
		mult := cfg.ChannelMult[level]
		for i := 0; i <= cfg.NumResBlocks; i++ {
			skip := chans[len(chans)-1]
			chans = chans[:len(chans)-1]
			bb := b.Sub(fmt.Sprintf("output_blocks.%d", len(u.Output)))
			blk := &Block{Res: newResBlock(bb.Sub("0"), ch+skip, mult*mc, emb)}
			ch = mult * mc
			next := 1
			if attnAt[ds] {
				blk.Attn = st(bb.Sub("1"), ch)
				next = 2
			}
			if level > 0 && i == cfg.NumResBlocks {
				blk.Up = nn.NewConv2d(bb.Sub(fmt.Sprint(next)), "conv", ch, ch, 3, 1, 1)
				ds /= 2
			}
			u.Output = append(u.Output, blk)
		}
	}
	u.OutNorm = nn.NewGroupNorm(b, "out.0", groups, ch, resEps)
	u.OutConv = nn.NewConv2d(b, "out.2", mc, cfg.OutChannels, 3, 1, 1)
	return u, b.Err()
}

// Forward predicts ε for x [B,C,H,W] at timesteps t (len B) with context
// ctx [B,S,ContextDim].
func (u *UNet) Forward(x *tensor.Tensor, t []float32, ctx *tensor.Tensor) *tensor.Tensor {
	sh := x.Shape()
	if len(sh) != 4 || sh[1] != u.Cfg.InChannels || sh[2] < 1 || sh[3] < 1 || len(t) != sh[0] {
		tensor.Errorf("UNet", "input %v with %d timesteps: want [B,%d,H,W]", sh, len(t), u.Cfg.InChannels)
	}
	e := x.Engine()
	temb := e.TimestepEmbedding(t, u.Cfg.ModelChannels)
	emb := u.TimeOut.Forward(tensor.SiLU(u.TimeIn.Forward(temb)))
	embAct := tensor.SiLU(emb) // every ResBlock's emb_layers starts with SiLU
	run := func(b *Block, h *tensor.Tensor, up [2]int) *tensor.Tensor {
		if !u.Checkpoint {
			return b.Forward(h, embAct, ctx, up)
		}
		return e.Checkpoint(func(in []*tensor.Tensor) *tensor.Tensor {
			return b.Forward(in[0], in[1], in[2], up)
		}, h, embAct, ctx)
	}
	h := x
	var skips []*tensor.Tensor
	for _, b := range u.Input {
		h = run(b, h, [2]int{})
		skips = append(skips, h)
	}
	h = run(u.Middle, h, [2]int{})
	for _, b := range u.Output {
		s := skips[len(skips)-1]
		skips = skips[:len(skips)-1]
		var up [2]int // the size of the skip the next block concatenates
		if len(skips) > 0 {
			ns := skips[len(skips)-1].Shape()
			up = [2]int{ns[2], ns[3]}
		}
		h = run(b, tensor.Concat(1, h, s), up)
	}
	return u.OutConv.Forward(u.OutNorm.ForwardSiLU(h))
}

// Linears and Convs list every layer a LoCon may wrap, in declaration
// order, with their module keys. (The lycoris package selects among them.)
func (u *UNet) Layers() (linears []*nn.Linear, convs []*nn.Conv2d) {
	add := func(l ...*nn.Linear) { linears = append(linears, l...) }
	addC := func(c ...*nn.Conv2d) {
		for _, x := range c {
			if x != nil {
				convs = append(convs, x)
			}
		}
	}
	add(u.TimeIn, u.TimeOut)
	res := func(r *ResBlock) {
		if r == nil {
			return
		}
		addC(r.Conv1, r.Conv2, r.Skip)
		add(r.Emb)
	}
	attn := func(s *SpatialTransformer) {
		if s == nil {
			return
		}
		addC(s.ProjIn, s.ProjOut)
		for _, t := range s.Blocks {
			add(t.Attn1.Q, t.Attn1.K, t.Attn1.V, t.Attn1.Out, t.Attn2.Q, t.Attn2.K, t.Attn2.V, t.Attn2.Out, t.FFIn, t.FFOut)
		}
	}
	block := func(b *Block) {
		addC(b.Conv, b.Down, b.Up)
		res(b.Res)
		attn(b.Attn)
		res(b.Res2)
	}
	for _, b := range u.Input {
		block(b)
	}
	block(u.Middle)
	for _, b := range u.Output {
		block(b)
	}
	addC(u.OutConv)
	return linears, convs
}
