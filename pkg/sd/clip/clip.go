package clip

import (
	"encoding/json"
	"fmt"

	"loco/pkg/nn"
	"loco/pkg/tensor"
)

// Prefix is the key prefix of the text encoder in a single-file SD 1.x
// checkpoint.
const Prefix = "cond_stage_model.transformer.text_model."

// OptionalKeys are keys (relative to Prefix) that a checkpoint may carry
// and the model neither declares nor reads.
var OptionalKeys = []string{"embeddings.position_ids"}

// Config holds the text encoder's hyper-parameters.
type Config struct {
	VocabSize     int     `json:"vocab_size"`     // 49408
	ContextLength int     `json:"context_length"` // 77 positions
	Width         int     `json:"width"`          // hidden size
	Layers        int     `json:"layers"`
	Heads         int     `json:"heads"`
	MLP           int     `json:"mlp"`            // intermediate size; 0 means 4·Width
	Eps           float32 `json:"layer_norm_eps"` // 0 means 1e-5
}

// DefaultConfig is SD 1.x's text encoder, CLIP ViT-L/14's text transformer.
func DefaultConfig() Config {
	return Config{VocabSize: 49408, ContextLength: 77, Width: 768, Layers: 12, Heads: 12, MLP: 3072, Eps: 1e-5}
}

// withDefaults fills MLP and Eps.
func (c Config) withDefaults() Config {
	if c.MLP == 0 {
		c.MLP = 4 * c.Width
	}
	if c.Eps == 0 {
		c.Eps = 1e-5
	}
	return c
}

// Validate reports a configuration this package cannot build.
func (c Config) Validate() error {
	if c.VocabSize <= 0 || c.ContextLength <= 0 || c.Width <= 0 || c.Layers <= 0 ||
		c.Heads <= 0 || c.Width%c.Heads != 0 || c.MLP < 0 || c.Eps < 0 {
		return fmt.Errorf("clip: bad config %+v", c)
	}
	return nil
}

// ParseConfig reads a JSON config with the field names of Config (as in a
// golden case's config; unknown fields are ignored). hidden_act, when
// present, must be quick_gelu and causal_mask, when present, true.
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return Config{}, fmt.Errorf("clip: config: %w", err)
	}
	var extra struct {
		HiddenAct  *string `json:"hidden_act"`
		CausalMask *bool   `json:"causal_mask"`
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		return Config{}, fmt.Errorf("clip: config: %w", err)
	}
	if extra.HiddenAct != nil && *extra.HiddenAct != "quick_gelu" {
		return Config{}, fmt.Errorf("clip: config: hidden_act %q is not supported (want quick_gelu)", *extra.HiddenAct)
	}
	if extra.CausalMask != nil && !*extra.CausalMask {
		return Config{}, fmt.Errorf("clip: config: causal_mask false is not supported")
	}
	c = c.withDefaults()
	return c, c.Validate()
}

// Layer is one CLIPEncoderLayer (pre-LayerNorm transformer block).
type Layer struct {
	LN1          *nn.LayerNorm // layer_norm1
	Q, K, V, Out *nn.Linear    // self_attn.{q,k,v,out}_proj
	LN2          *nn.LayerNorm // layer_norm2
	FC1, FC2     *nn.Linear    // mlp.fc1 (Width→MLP), mlp.fc2 (MLP→Width)
	Heads        int
	path         string // "text_model.encoder.layers.i"
}

// Forward maps x [B, T, Width] to the layer's output, same shape.
func (l *Layer) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := l.LN1.Forward(x)
	a := tensor.Attention(l.Q.Forward(h), l.K.Forward(h), l.V.Forward(h), l.Heads, true)
	x = tensor.Add(x, l.Out.Forward(a))
	h = tensor.QuickGELU(l.FC1.Forward(l.LN2.Forward(x)))
	return tensor.Add(x, l.FC2.Forward(h))
}

// NamedLinear is a Linear layer with its module path under CLIPTextModel,
// e.g. "text_model.encoder.layers.0.self_attn.q_proj" (kohya's lora_te_
// name is "lora_te_" + the path with dots replaced by underscores).
type NamedLinear struct {
	Path string
	L    *nn.Linear
}

// Linears lists the layer's six Linear layers: q, k, v, out projections,
// fc1, fc2.
func (l *Layer) Linears() []NamedLinear {
	return []NamedLinear{
		{l.path + ".self_attn.q_proj", l.Q},
		{l.path + ".self_attn.k_proj", l.K},
		{l.path + ".self_attn.v_proj", l.V},
		{l.path + ".self_attn.out_proj", l.Out},
		{l.path + ".mlp.fc1", l.FC1},
		{l.path + ".mlp.fc2", l.FC2},
	}
}

// Model is the text encoder.
type Model struct {
	Cfg      Config
	TokenEmb *nn.Embedding // embeddings.token_embedding [VocabSize, Width]
	PosEmb   *nn.Embedding // embeddings.position_embedding [ContextLength, Width]
	Layers   []*Layer      // encoder.layers.i
	FinalLN  *nn.LayerNorm // final_layer_norm
}

// New declares every parameter on b, whose prefix the caller sets (Prefix
// for a single-file checkpoint), and loads them when b has a Source. Load
// errors are reported by b.Err(). cfg must be valid (Config.Validate; a
// zero MLP or Eps takes its default); New panics otherwise.
func New(b *nn.Builder, cfg Config) *Model {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	m := &Model{Cfg: cfg}
	emb := b.Sub("embeddings")
	m.TokenEmb = nn.NewEmbedding(emb, "token_embedding", cfg.VocabSize, cfg.Width)
	m.PosEmb = nn.NewEmbedding(emb, "position_embedding", cfg.ContextLength, cfg.Width)
	w := cfg.Width
	for i := 0; i < cfg.Layers; i++ {
		name := fmt.Sprintf("layers.%d", i)
		s := b.Sub("encoder").Sub(name)
		at, mlp := s.Sub("self_attn"), s.Sub("mlp")
		m.Layers = append(m.Layers, &Layer{
			LN1:   nn.NewLayerNorm(s, "layer_norm1", w, cfg.Eps),
			Q:     nn.NewLinear(at, "q_proj", w, w, true),
			K:     nn.NewLinear(at, "k_proj", w, w, true),
			V:     nn.NewLinear(at, "v_proj", w, w, true),
			Out:   nn.NewLinear(at, "out_proj", w, w, true),
			LN2:   nn.NewLayerNorm(s, "layer_norm2", w, cfg.Eps),
			FC1:   nn.NewLinear(mlp, "fc1", w, cfg.MLP, true),
			FC2:   nn.NewLinear(mlp, "fc2", cfg.MLP, w, true),
			Heads: cfg.Heads,
			path:  "text_model.encoder." + name,
		})
	}
	m.FinalLN = nn.NewLayerNorm(b, "final_layer_norm", w, cfg.Eps)
	return m
}

// Linears lists every Linear layer of the encoder with its module path,
// six per layer in layer order.
func (m *Model) Linears() []NamedLinear {
	var out []NamedLinear
	for _, l := range m.Layers {
		out = append(out, l.Linears()...)
	}
	return out
}

// Embed is token_embedding[ids] + position_embedding[0..T-1] for B rows of
// T ids each: [B, T, Width].
func (m *Model) Embed(ids [][]int32) *tensor.Tensor {
	if len(ids) == 0 {
		tensor.Errorf("clip.Embed", "no sequences")
	}
	t := len(ids[0])
	if t == 0 || t > m.Cfg.ContextLength {
		tensor.Errorf("clip.Embed", "sequence of %d tokens, want 1..%d", t, m.Cfg.ContextLength)
	}
	flat := make([]int32, 0, len(ids)*t)
	for i, row := range ids {
		if len(row) != t {
			tensor.Errorf("clip.Embed", "sequence %d has %d tokens, sequence 0 has %d", i, len(row), t)
		}
		flat = append(flat, row...)
	}
	x := tensor.Reshape(m.TokenEmb.Forward(flat), len(ids), t, m.Cfg.Width)
	pos := m.PosEmb.W
	if t < m.Cfg.ContextLength {
		pos = tensor.Slice(pos, 0, 0, t)
	}
	return tensor.Add(x, pos) // [T, Width] broadcast over B
}

// HiddenStates runs the embeddings and the first n layers (0 ≤ n ≤ Layers)
// and returns n+1 tensors [B, T, Width]: the embeddings, then the output
// of each layer, without the final LayerNorm.
func (m *Model) HiddenStates(ids [][]int32, n int) []*tensor.Tensor {
	if n < 0 || n > len(m.Layers) {
		tensor.Errorf("clip.HiddenStates", "%d layers of %d", n, len(m.Layers))
	}
	hs := []*tensor.Tensor{m.Embed(ids)}
	for _, l := range m.Layers[:n] {
		hs = append(hs, l.Forward(hs[len(hs)-1]))
	}
	return hs
}

// Output holds a full forward pass.
type Output struct {
	Hidden []*tensor.Tensor // Layers+1 states [B, T, Width]: embeddings, then each layer's output
	Last   *tensor.Tensor   // final_layer_norm(Hidden[Layers]): last_hidden_state
}

// Forward runs every layer and returns all hidden states and
// last_hidden_state. Use Skip for a clip-skip output of the same pass.
func (m *Model) Forward(ids [][]int32) Output {
	hs := m.HiddenStates(ids, len(m.Layers))
	return Output{Hidden: hs, Last: m.Final(hs[len(hs)-1])}
}

// Skip is the clip-skip N output of a forward pass: final_layer_norm of
// hidden state Layers-N+1 (N = 1 is out.Last).
func (m *Model) Skip(out Output, clipSkip int) *tensor.Tensor {
	if clipSkip < 1 || clipSkip > len(m.Layers) {
		tensor.Errorf("clip.Skip", "clip skip %d with %d layers", clipSkip, len(m.Layers))
	}
	if clipSkip == 1 {
		return out.Last
	}
	return m.Final(out.Hidden[len(m.Layers)-clipSkip+1])
}

// Final is final_layer_norm(h).
func (m *Model) Final(h *tensor.Tensor) *tensor.Tensor { return m.FinalLN.Forward(h) }

// Encode returns the conditioning [B, T, Width] for clip skip N ≥ 1:
// final_layer_norm of hidden state Layers-N+1, computing only the layers it
// needs. N = 1 is last_hidden_state, N = 2 the penultimate layer.
func (m *Model) Encode(ids [][]int32, clipSkip int) *tensor.Tensor {
	if clipSkip < 1 || clipSkip > len(m.Layers) {
		tensor.Errorf("clip.Encode", "clip skip %d with %d layers", clipSkip, len(m.Layers))
	}
	hs := m.HiddenStates(ids, len(m.Layers)-clipSkip+1)
	return m.Final(hs[len(hs)-1])
}
