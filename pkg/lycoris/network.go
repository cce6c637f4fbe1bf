package lycoris

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// Config chooses ranks and alphas (kohya/LyCORIS argument names).
type Config struct {
	Algo             Algo    // locon (default) or loha
	Dim, ConvDim     int     // network_dim (Linear, 1×1 conv), conv_dim (k×k conv)
	Alpha, ConvAlpha float32 // network_alpha, conv_alpha; 0 means alpha = rank
	Tucker           bool    // use_tucker: k×k convs as down 1×1, mid k×k, up 1×1
	Multiplier       float32 // 1 in training

	// Modules, when not nil, limits the network to the layers named here
	// (kohya names), each with its own rank (0: Dim or ConvDim by kind): a
	// network built as a file is (dim_from_weights), whose modules may
	// cover part of a preset and differ in rank. A module's alpha is then
	// Alpha or ConvAlpha, or its rank when those are 0.
	Modules map[string]int
}

// Module is one wrapped layer: ΔW = scale · up·(mid)·down (LoCon) or
// scale · (W1a·W1b) ⊙ (W2a·W2b) (LoHa), scale = multiplier·alpha/rank.
type Module struct {
	Name   string // kohya name, e.g. lora_unet_down_blocks_0_resnets_0_conv1
	Layer  string // checkpoint module key of the wrapped layer
	Rank   int
	Alpha  float32
	Conv   bool // wraps a Conv2d
	Kernel int  // conv kernel size (1 for Linear)

	// LoCon factors: views into the network's flat buffer (Mid nil unless Tucker).
	Down, Mid, Up *tensor.Tensor
	// LoHa factors: ΔW = (W1a·W1b) ⊙ (W2a·W2b).
	W1a, W1b, W2a, W2b *tensor.Tensor

	stride, pad, in, out int
	algo                 Algo
	net                  *Network
	idx                  int // position in Network.Modules (seeds its dropout masks)
}

// Scale is multiplier·alpha/rank.
func (m *Module) Scale() float32 { return m.net.Multiplier * m.Alpha / float32(m.Rank) }

// Entry is one tensor of the flat parameter buffer.
type Entry struct {
	Key    string // file key, e.g. <name>.lora_down.weight
	Offset int
	Shape  tensor.Shape
}

// Network is a set of LoCon modules whose trainable tensors share one flat
// F32 buffer (and gradient buffer), so that zeroing, clipping, the
// optimizer step and checkpointing are single loops.
type Network struct {
	Modules    []*Module
	Entries    []Entry // in buffer order
	Params     tensor.Storage
	Grads      tensor.Storage
	Multiplier float32
	e          *tensor.Engine
	index      map[string]int // file key -> Entries index

	drop     Dropout // training-only dropouts (dropout.go)
	training bool
	dropSeed uint64

	hooked      []hooked               // the adapters New added to layers, for Detach
	mir         *mirror                // low-precision copy (mirror.go)
	offsets     map[*tensor.Tensor]int // flat-buffer offset of each factor
	forceMirror bool                   // tests: use the mirror in F32 too
}

// New wraps the given layers (all of them; selection is the caller's, see
// UNetLayers/TELayers) and allocates the flat buffers. Parameters are
// initialised as LyCORIS does: down (and mid) kaiming-uniform(a=√5), that is
// U(±1/√fan_in), up zero, drawn from rng.
func New(e *tensor.Engine, cfg Config, linears []*nn.Linear, convs []*nn.Conv2d, rng *rand.Rand) (*Network, error) {
	if cfg.Dim <= 0 {
		return nil, fmt.Errorf("lycoris: network_dim must be positive, got %d", cfg.Dim)
	}
	if cfg.ConvDim <= 0 {
		cfg.ConvDim, cfg.ConvAlpha = cfg.Dim, cfg.Alpha
	}
	if cfg.Multiplier == 0 {
		cfg.Multiplier = 1
	}
	switch cfg.Algo {
	case "", "lora":
		cfg.Algo = AlgoLoCon
	case AlgoLoCon:
	case AlgoLoHa:
		if cfg.Tucker {
			return nil, fmt.Errorf("lycoris: LoHa with use_tucker is not supported")
		}
	default:
		return nil, fmt.Errorf("lycoris: unknown algo %q (locon, lora, loha)", cfg.Algo)
	}
	if cfg.Modules != nil {
		var err error
		if linears, convs, err = onlyNamed(cfg.Modules, linears, convs); err != nil {
			return nil, err
		}
	}
	n := &Network{Multiplier: cfg.Multiplier, e: e}
	alphaOr := func(a float32, r int) float32 {
		if a == 0 {
			return float32(r)
		}
		return a
	}
	var mods []*Module
	for _, l := range linears {
		mods = append(mods, &Module{Layer: l.Key, Rank: cfg.Dim, Alpha: alphaOr(cfg.Alpha, cfg.Dim), Kernel: 1})
	}
	for _, c := range convs {
		m := &Module{Layer: c.Key, Conv: true, Kernel: c.Kernel, stride: c.Stride, pad: c.Pad,
			Rank: cfg.Dim, Alpha: alphaOr(cfg.Alpha, cfg.Dim)}
		if c.Kernel > 1 {
			m.Rank, m.Alpha = cfg.ConvDim, alphaOr(cfg.ConvAlpha, cfg.ConvDim)
		}
		mods = append(mods, m)
	}
	// Factor shapes per module, then one flat layout in module order.
	specs := make([][]factor, len(mods))
	li, ci := 0, 0
	for i, m := range mods {
		name, err := KohyaName(m.Layer)
		if err != nil {
			return nil, err
		}
		m.Name, m.net, m.algo, m.idx = name, n, cfg.Algo, i
		if r := cfg.Modules[name]; r > 0 {
			a := cfg.Alpha
			if m.Conv && m.Kernel > 1 {
				a = cfg.ConvAlpha
			}
			m.Rank, m.Alpha = r, alphaOr(a, r)
		}
		in, out, k := 0, 0, m.Kernel
		if m.Conv {
			in, out = convs[ci].In, convs[ci].Out
			ci++
		} else {
			in, out = linears[li].In, linears[li].Out
			li++
		}
		m.in, m.out = in, out
		specs[i] = factorsOf(cfg, m.Rank, in, out, k, m.Conv)
	}
	total := 0
	offs := make([][]int, len(mods))
	for i, m := range mods {
		for _, f := range specs[i] {
			offs[i] = append(offs[i], total)
			n.Entries = append(n.Entries, Entry{Key: m.Name + f.suffix, Offset: total, Shape: f.shape})
			total += f.shape.Numel()
		}
	}
	n.index = make(map[string]int, len(n.Entries))
	for i, en := range n.Entries {
		n.index[en.Key] = i
	}
	n.Params = e.B.Alloc(tensor.F32, total)
	n.Grads = e.B.Alloc(tensor.F32, total)
	e.B.Fill(n.Grads, 0)
	init := make([]float32, total)
	n.offsets = map[*tensor.Tensor]int{}
	for i, m := range mods {
		for j, f := range specs[i] {
			off, sz := offs[i][j], f.shape.Numel()
			t := e.Wrap(e.B.View(n.Params, off, sz), f.shape...).Param(e.B.View(n.Grads, off, sz))
			*m.field(f.suffix) = t
			n.offsets[t] = off
			f.fill(init[off:off+sz], f.shape, rng)
		}
	}
	e.B.Upload(n.Params, init)
	n.Modules = mods
	// Hook the layers: each module appends its adapter (after those of
	// networks attached before; Detach removes exactly these).
	li, ci = 0, 0
	for _, m := range mods {
		var list *[]*nn.Adapter
		if m.Conv {
			list = &convs[ci].Adapters
			ci++
		} else {
			list = &linears[li].Adapters
			li++
		}
		a := &nn.Adapter{LowRank: m.lowRank}
		if m.algo == AlgoLoHa {
			a = &nn.Adapter{WeightDelta: m.weightDelta}
		}
		*list = append(*list, a)
		n.hooked = append(n.hooked, hooked{list, a})
	}
	return n, nil
}

// onlyNamed keeps the layers whose kohya names are in names, and fails
// naming the first name no layer has.
func onlyNamed(names map[string]int, linears []*nn.Linear, convs []*nn.Conv2d) ([]*nn.Linear, []*nn.Conv2d, error) {
	found := map[string]bool{}
	var ls []*nn.Linear
	for _, l := range linears {
		if n, err := KohyaName(l.Key); err == nil {
			if _, ok := names[n]; ok {
				ls, found[n] = append(ls, l), true
			}
		}
	}
	var cs []*nn.Conv2d
	for _, c := range convs {
		if n, err := KohyaName(c.Key); err == nil {
			if _, ok := names[n]; ok {
				cs, found[n] = append(cs, c), true
			}
		}
	}
	var missing []string
	for n := range names {
		if !found[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, nil, fmt.Errorf("lycoris: %d modules name no layer given to the network (e.g. %s)", len(missing), missing[0])
	}
	return ls, cs, nil
}

// weight returns a factor in the activation dtype: its view in the
// network's low-precision mirror when the engine computes in F16/BF16
// (mirror.go).
func (m *Module) weight(t *tensor.Tensor) *tensor.Tensor {
	n := m.net
	act := n.e.Act
	if t.DType() == act && !n.forceMirror {
		return t
	}
	if mt := n.mirrored(t, act); mt != nil {
		return mt
	}
	return tensor.Cast(t, act)
}

// lowRank is the module's branch for the layer's LowRank hook: the rank
// features h = down(x) (through mid with Tucker, with the training
// dropouts), the up factor and the scale; h is nil when module dropout
// skips the module.
func (m *Module) lowRank(x *tensor.Tensor) (h, up *tensor.Tensor, scale float32) {
	r := m.dropRNG()
	if r != nil && m.skipped(r) {
		return nil, nil, 0
	}
	switch {
	case !m.Conv:
		h = tensor.Linear(x, m.weight(m.Down), nil)
	case m.Mid != nil:
		h = tensor.Conv2D(x, m.weight(m.Down), nil, 1, 0)
		h = tensor.Conv2D(h, m.weight(m.Mid), nil, m.stride, m.pad)
	default:
		h = tensor.Conv2D(x, m.weight(m.Down), nil, m.stride, m.pad)
	}
	if r != nil {
		h = m.dropFeatures(h, r)
	}
	return h, m.weight(m.Up), m.Scale()
}

// hooked is an adapter a network added to a layer's list.
type hooked struct {
	list *[]*nn.Adapter
	a    *nn.Adapter
}

// Detach unhooks this network's modules from their layers; other networks'
// adapters stay, whatever the order they were attached in.
func (n *Network) Detach() {
	for _, h := range n.hooked {
		l := *h.list
		for i, a := range l {
			if a == h.a {
				*h.list = append(l[:i:i], l[i+1:]...)
				break
			}
		}
	}
	n.hooked = nil
}

// Detach removes every network's hooks from the layers (the base model
// runs unchanged).
func Detach(linears []*nn.Linear, convs []*nn.Conv2d) {
	for _, l := range linears {
		l.Adapters, l.Extra = nil, nil
	}
	for _, c := range convs {
		c.Adapters, c.Extra = nil, nil
	}
}

// Entry returns the flat-buffer entry for a file key.
func (n *Network) Entry(key string) (Entry, bool) {
	i, ok := n.index[key]
	if !ok {
		return Entry{}, false
	}
	return n.Entries[i], true
}

// Len is the number of trainable values.
func (n *Network) Len() int { return n.Params.Len() }

// ZeroGrad clears the gradient buffer (and the mirror's, which an
// interrupted backward may have left partly written).
func (n *Network) ZeroGrad() {
	n.e.B.Fill(n.Grads, 0)
	if n.mir != nil {
		n.e.B.Fill(n.mir.grads, 0)
	}
}

// SetValues uploads values for the tensor with file key key.
func (n *Network) SetValues(key string, v []float32) error {
	en, ok := n.Entry(key)
	if !ok {
		return fmt.Errorf("lycoris: network has no tensor %s", key)
	}
	if len(v) != en.Shape.Numel() {
		return fmt.Errorf("lycoris: %s: %d values for shape %v", key, len(v), en.Shape)
	}
	n.e.B.Upload(n.e.B.View(n.Params, en.Offset, len(v)), v)
	n.Touch()
	return nil
}

// Values downloads the tensor with file key key (from the parameter or, if
// grad, the gradient buffer).
func (n *Network) Values(key string, grad bool) ([]float32, error) {
	en, ok := n.Entry(key)
	if !ok {
		return nil, fmt.Errorf("lycoris: network has no tensor %s", key)
	}
	src := n.Params
	if grad {
		src = n.Grads
	}
	out := make([]float32, en.Shape.Numel())
	n.e.B.Download(out, n.e.B.View(src, en.Offset, len(out)))
	return out, nil
}
