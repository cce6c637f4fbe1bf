package sd

import (
	"fmt"
	"strings"
)

// The key tables between the single-file (LDM) names and the names of a
// diffusers folder. A table is a list of module-prefix pairs; a key maps by
// its longest listed prefix, and where the pair lists child renames (the
// ResNet layers, the VAE attention) the first path element below the prefix
// is renamed too. The tables are generated from the block layout with the
// loops of the original LDM code, so they cover exactly the modules the
// models declare; TestDiffusersTables* check them over the SD 1.5 key lists.

// child renames one module directly below a table prefix.
type child struct {
	ldm, hf string
	// squeeze: the LDM weight is a 1×1 convolution [C, C', 1, 1] whose
	// diffusers counterpart is a Linear weight [C, C'] (the VAE attention).
	squeeze bool
}

// prefixRule maps the module prefix ldm (ending in ".") onto hf.
type prefixRule struct {
	ldm, hf  string
	children []child // nil: the rest of the key is unchanged
}

// KeyTable converts keys between the LDM and diffusers names of one model.
// Keys are relative to the model (no "model.diffusion_model." prefix on the
// LDM side, no folder on the diffusers side).
type KeyTable struct {
	rules     []prefixRule
	byLDM     map[string]*prefixRule
	byHF      map[string]*prefixRule
	hfAliases map[string][]string // diffusers child name -> older names of it
}

func newKeyTable(rules []prefixRule, aliases map[string][]string) *KeyTable {
	t := &KeyTable{rules: rules, byLDM: map[string]*prefixRule{}, byHF: map[string]*prefixRule{}, hfAliases: aliases}
	for i := range t.rules {
		r := &t.rules[i]
		if _, dup := t.byLDM[r.ldm]; dup {
			panic("sd: duplicate LDM prefix in key table: " + r.ldm)
		}
		if _, dup := t.byHF[r.hf]; dup {
			panic("sd: duplicate diffusers prefix in key table: " + r.hf)
		}
		t.byLDM[r.ldm], t.byHF[r.hf] = r, r
	}
	return t
}

// Mapped is one key's counterpart.
type Mapped struct {
	Key string
	// Squeeze: the LDM tensor is [C, C', 1, 1] where the diffusers one is
	// [C, C'] (same values, row-major).
	Squeeze bool
}

// longest finds the rule whose prefix is the longest dotted prefix of key.
func longest(m map[string]*prefixRule, key string) (*prefixRule, string) {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] != '.' {
			continue
		}
		if r, ok := m[key[:i+1]]; ok {
			return r, key[i+1:]
		}
	}
	if r, ok := m[""]; ok {
		return r, key
	}
	return nil, ""
}

// ToDiffusers maps an LDM key (relative to the model prefix) to its
// diffusers name.
func (t *KeyTable) ToDiffusers(key string) (Mapped, bool) {
	r, rest := longest(t.byLDM, key)
	if r == nil {
		return Mapped{}, false
	}
	if r.children == nil {
		return Mapped{Key: r.hf + rest}, true
	}
	for _, c := range r.children {
		if after, ok := strings.CutPrefix(rest, c.ldm+"."); ok {
			return Mapped{Key: r.hf + c.hf + "." + after, Squeeze: c.squeeze && after == "weight"}, true
		}
	}
	return Mapped{}, false
}

// FromDiffusers maps a diffusers key to its LDM name. Older diffusers
// child names (query/key/value/proj_attn of the VAE attention) are
// accepted too.
func (t *KeyTable) FromDiffusers(key string) (Mapped, bool) {
	r, rest := longest(t.byHF, key)
	if r == nil {
		return Mapped{}, false
	}
	if r.children == nil {
		return Mapped{Key: r.ldm + rest}, true
	}
	for _, c := range r.children {
		names := append([]string{c.hf}, t.hfAliases[c.hf]...)
		for _, n := range names {
			if after, ok := strings.CutPrefix(rest, n+"."); ok {
				return Mapped{Key: r.ldm + c.ldm + "." + after, Squeeze: c.squeeze && after == "weight"}, true
			}
		}
	}
	return Mapped{}, false
}

// aliasesOf lists the older diffusers names of an LDM key's diffusers key
// (for example the pre-0.14 "query" for "to_q"), in the order tried.
func (t *KeyTable) aliasesOf(key string) []string {
	r, rest := longest(t.byLDM, key)
	if r == nil {
		return nil
	}
	var out []string
	for _, c := range r.children {
		if after, ok := strings.CutPrefix(rest, c.ldm+"."); ok {
			for _, a := range t.hfAliases[c.hf] {
				out = append(out, r.hf+a+"."+after)
			}
		}
	}
	return out
}

// UNetLayout is the block structure the UNet table is generated for.
type UNetLayout struct {
	Levels    int    // resolution levels (len(channel_mult)): 4
	ResBlocks int    // ResBlocks per down level (num_res_blocks): 2
	Attn      []bool // per level, whether its blocks carry a SpatialTransformer
}

// SD15UNetLayout is SD 1.x's UNet: four levels of two ResBlocks, attention
// on the first three.
func SD15UNetLayout() UNetLayout {
	return UNetLayout{Levels: 4, ResBlocks: 2, Attn: []bool{true, true, true, false}}
}

// unetResnet are the renames inside an LDM ResBlock.
var unetResnet = []child{
	{ldm: "in_layers.0", hf: "norm1"},
	{ldm: "in_layers.2", hf: "conv1"},
	{ldm: "emb_layers.1", hf: "time_emb_proj"},
	{ldm: "out_layers.0", hf: "norm2"},
	{ldm: "out_layers.3", hf: "conv2"},
	{ldm: "skip_connection", hf: "conv_shortcut"},
}

// UNetTable is the table of the UNet under "model.diffusion_model." and
// unet/diffusion_pytorch_model.safetensors. The layout of LDM's
// UNetModel: input_blocks.0 is conv_in, then per level ResBlocks+1 input
// blocks (the last one, except on the deepest level, a downsampler);
// output_blocks mirror the levels from the deepest up with ResBlocks+1
// blocks each, the last one of a level (except the top) ending in an
// upsampler, at position 1 or 2 depending on whether the block has a
// SpatialTransformer. Transformer internals have the same names on both
// sides.
func UNetTable(l UNetLayout) (*KeyTable, error) {
	if l.Levels <= 0 || l.ResBlocks <= 0 || len(l.Attn) != l.Levels {
		return nil, fmt.Errorf("sd: bad UNet layout %+v", l)
	}
	rules := []prefixRule{
		{ldm: "time_embed.0.", hf: "time_embedding.linear_1."},
		{ldm: "time_embed.2.", hf: "time_embedding.linear_2."},
		{ldm: "input_blocks.0.0.", hf: "conv_in."},
		{ldm: "out.0.", hf: "conv_norm_out."},
		{ldm: "out.2.", hf: "conv_out."},
		{ldm: "middle_block.0.", hf: "mid_block.resnets.0.", children: unetResnet},
		{ldm: "middle_block.1.", hf: "mid_block.attentions.0."},
		{ldm: "middle_block.2.", hf: "mid_block.resnets.1.", children: unetResnet},
	}
	n := l.ResBlocks + 1
	for i := 0; i < l.Levels; i++ {
		for j := 0; j < l.ResBlocks; j++ {
			in := fmt.Sprintf("input_blocks.%d.", i*n+j+1)
			rules = append(rules, prefixRule{ldm: in + "0.", hf: fmt.Sprintf("down_blocks.%d.resnets.%d.", i, j), children: unetResnet})
			if l.Attn[i] {
				rules = append(rules, prefixRule{ldm: in + "1.", hf: fmt.Sprintf("down_blocks.%d.attentions.%d.", i, j)})
			}
		}
		if i < l.Levels-1 {
			rules = append(rules, prefixRule{ldm: fmt.Sprintf("input_blocks.%d.0.op.", (i+1)*n),
				hf: fmt.Sprintf("down_blocks.%d.downsamplers.0.conv.", i)})
		}
		// Up block i of diffusers is level Levels-1-i.
		lvl := l.Levels - 1 - i
		for j := 0; j < n; j++ {
			out := fmt.Sprintf("output_blocks.%d.", i*n+j)
			rules = append(rules, prefixRule{ldm: out + "0.", hf: fmt.Sprintf("up_blocks.%d.resnets.%d.", i, j), children: unetResnet})
			if l.Attn[lvl] {
				rules = append(rules, prefixRule{ldm: out + "1.", hf: fmt.Sprintf("up_blocks.%d.attentions.%d.", i, j)})
			}
		}
		if i < l.Levels-1 {
			pos := 1
			if l.Attn[lvl] {
				pos = 2
			}
			rules = append(rules, prefixRule{ldm: fmt.Sprintf("output_blocks.%d.%d.", i*n+n-1, pos),
				hf: fmt.Sprintf("up_blocks.%d.upsamplers.0.", i)})
		}
	}
	return newKeyTable(rules, nil), nil
}

// VAELayout is the block structure of the autoencoder.
type VAELayout struct {
	Levels    int // len(ch_mult): 4
	ResBlocks int // num_res_blocks of the encoder (the decoder has one more): 2
}

// SD15VAELayout is SD 1.x's autoencoder.
func SD15VAELayout() VAELayout { return VAELayout{Levels: 4, ResBlocks: 2} }

var (
	vaeResnet = []child{
		{ldm: "norm1", hf: "norm1"},
		{ldm: "conv1", hf: "conv1"},
		{ldm: "norm2", hf: "norm2"},
		{ldm: "conv2", hf: "conv2"},
		{ldm: "nin_shortcut", hf: "conv_shortcut"},
	}
	// vaeAttn: LDM's AttnBlock holds 1×1 convolutions, diffusers' Attention
	// Linear layers.
	vaeAttn = []child{
		{ldm: "norm", hf: "group_norm"},
		{ldm: "q", hf: "to_q", squeeze: true},
		{ldm: "k", hf: "to_k", squeeze: true},
		{ldm: "v", hf: "to_v", squeeze: true},
		{ldm: "proj_out", hf: "to_out.0", squeeze: true},
	}
	// vaeAttnAliases are the names diffusers before 0.14 saved.
	vaeAttnAliases = map[string][]string{"to_q": {"query"}, "to_k": {"key"}, "to_v": {"value"}, "to_out.0": {"proj_attn"}}
)

// VAETable is the table of the autoencoder under "first_stage_model." and
// vae/diffusion_pytorch_model.safetensors. Decoder levels are numbered
// from the bottom in LDM (up.3 is the first one run) and from the top in
// diffusers (up_blocks.0 is the first one run).
func VAETable(l VAELayout) (*KeyTable, error) {
	if l.Levels <= 0 || l.ResBlocks <= 0 {
		return nil, fmt.Errorf("sd: bad VAE layout %+v", l)
	}
	rules := []prefixRule{
		{ldm: "quant_conv.", hf: "quant_conv."},
		{ldm: "post_quant_conv.", hf: "post_quant_conv."},
	}
	for _, part := range []string{"encoder.", "decoder."} {
		rules = append(rules,
			prefixRule{ldm: part + "conv_in.", hf: part + "conv_in."},
			prefixRule{ldm: part + "conv_out.", hf: part + "conv_out."},
			prefixRule{ldm: part + "norm_out.", hf: part + "conv_norm_out."},
			prefixRule{ldm: part + "mid.block_1.", hf: part + "mid_block.resnets.0.", children: vaeResnet},
			prefixRule{ldm: part + "mid.attn_1.", hf: part + "mid_block.attentions.0.", children: vaeAttn},
			prefixRule{ldm: part + "mid.block_2.", hf: part + "mid_block.resnets.1.", children: vaeResnet},
		)
	}
	for i := 0; i < l.Levels; i++ {
		for j := 0; j < l.ResBlocks; j++ {
			rules = append(rules, prefixRule{ldm: fmt.Sprintf("encoder.down.%d.block.%d.", i, j),
				hf: fmt.Sprintf("encoder.down_blocks.%d.resnets.%d.", i, j), children: vaeResnet})
		}
		up := l.Levels - 1 - i
		for j := 0; j <= l.ResBlocks; j++ {
			rules = append(rules, prefixRule{ldm: fmt.Sprintf("decoder.up.%d.block.%d.", up, j),
				hf: fmt.Sprintf("decoder.up_blocks.%d.resnets.%d.", i, j), children: vaeResnet})
		}
		if i < l.Levels-1 {
			rules = append(rules,
				prefixRule{ldm: fmt.Sprintf("encoder.down.%d.downsample.", i), hf: fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.", i)},
				prefixRule{ldm: fmt.Sprintf("decoder.up.%d.upsample.", up), hf: fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.", i)})
		}
	}
	return newKeyTable(rules, vaeAttnAliases), nil
}

// CLIPTable is the table of the text encoder: the single file nests
// Hugging Face's CLIPTextModel under "cond_stage_model.transformer.", so
// the names below it are the same as in text_encoder/model.safetensors.
// Keys are relative to "cond_stage_model.transformer." on the LDM side.
func CLIPTable() *KeyTable {
	return newKeyTable([]prefixRule{{ldm: "text_model.", hf: "text_model."}}, nil)
}
