package lycoris

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"

	"loco/pkg/nn"
	"loco/pkg/safetensors"
)

// FileModule is one module of a network file, on the host, in float32.
type FileModule struct {
	Name                         string
	Down, Up, Mid                []float32 // LoCon
	DownShape, UpShape, MidShape []int
	W1a, W1b, W2a, W2b           []float32 // LoHa (hada_w1_a ...)
	W1aShape, W1bShape           []int
	W2aShape, W2bShape           []int
	Alpha                        float32
	HasAlpha                     bool
}

// IsLoHa reports whether the module holds LoHa (hada_*) tensors.
func (m *FileModule) IsLoHa() bool {
	return m.W1a != nil || m.W1b != nil || m.W2a != nil || m.W2b != nil
}

// Rank is lora_down's first dimension (hada_w1_b's for LoHa).
func (m *FileModule) Rank() int {
	if m.IsLoHa() {
		return m.W1bShape[0]
	}
	return m.DownShape[0]
}

// File is a LoCon network file in kohya/LyCORIS layout.
type File struct {
	Path     string
	Modules  []*FileModule // sorted by name
	Metadata map[string]string
}

// Module returns the module called name.
func (f *File) Module(name string) (*FileModule, bool) {
	i := sort.Search(len(f.Modules), func(i int) bool { return f.Modules[i].Name >= name })
	if i < len(f.Modules) && f.Modules[i].Name == name {
		return f.Modules[i], true
	}
	return nil, false
}

// tensor suffixes of a LoCon module.
const (
	sufDown  = ".lora_down.weight"
	sufUp    = ".lora_up.weight"
	sufMid   = ".lora_mid.weight"
	sufAlpha = ".alpha"
)

// ReadFile reads a LoCon network (any dtype; with or without lora_mid and
// alpha). Keys that are not LoCon tensors (LoHa, LoKr, DyLoRA ...) are an
// error listing them, and every module needs both lora_down and lora_up of
// matching rank.
func ReadFile(path string) (*File, error) {
	sf, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	f := &File{Path: path, Metadata: sf.Metadata()}
	mods := map[string]*FileModule{}
	get := func(name string) *FileModule {
		m := mods[name]
		if m == nil {
			m = &FileModule{Name: name}
			mods[name] = m
		}
		return m
	}
	var unknown []string
	for _, k := range sf.Names() {
		info, _ := sf.Info(k)
		var name string
		var dst *[]float32
		var shape *[]int
		switch {
		case strings.HasSuffix(k, sufDown):
			name = strings.TrimSuffix(k, sufDown)
			m := get(name)
			dst, shape = &m.Down, &m.DownShape
		case strings.HasSuffix(k, sufUp):
			name = strings.TrimSuffix(k, sufUp)
			m := get(name)
			dst, shape = &m.Up, &m.UpShape
		case strings.HasSuffix(k, sufMid):
			name = strings.TrimSuffix(k, sufMid)
			m := get(name)
			dst, shape = &m.Mid, &m.MidShape
		case strings.HasSuffix(k, ".hada_w1_a"):
			m := get(strings.TrimSuffix(k, ".hada_w1_a"))
			dst, shape = &m.W1a, &m.W1aShape
		case strings.HasSuffix(k, ".hada_w1_b"):
			m := get(strings.TrimSuffix(k, ".hada_w1_b"))
			dst, shape = &m.W1b, &m.W1bShape
		case strings.HasSuffix(k, ".hada_w2_a"):
			m := get(strings.TrimSuffix(k, ".hada_w2_a"))
			dst, shape = &m.W2a, &m.W2aShape
		case strings.HasSuffix(k, ".hada_w2_b"):
			m := get(strings.TrimSuffix(k, ".hada_w2_b"))
			dst, shape = &m.W2b, &m.W2bShape
		case strings.HasSuffix(k, sufAlpha):
			m := get(strings.TrimSuffix(k, sufAlpha))
			v, err := sf.ReadFloat32(k)
			if err != nil {
				return nil, err
			}
			if len(v) != 1 {
				return nil, fmt.Errorf("%s: %s has %d values, want a scalar", path, k, len(v))
			}
			m.Alpha, m.HasAlpha = v[0], true
			continue
		default:
			unknown = append(unknown, k)
			continue
		}
		v, err := sf.ReadFloat32(k)
		if err != nil {
			return nil, err
		}
		*dst, *shape = v, append([]int(nil), info.Shape...)
	}
	if len(unknown) > 0 {
		if len(unknown) > 8 {
			unknown = append(unknown[:8], fmt.Sprintf("… (%d more)", len(unknown)-8))
		}
		return nil, fmt.Errorf("%s: not a LoCon or LoHa network (lora_down/lora_up/lora_mid, hada_w1_a/b, hada_w2_a/b, alpha); unexpected tensors: %s",
			path, strings.Join(unknown, ", "))
	}
	for _, m := range mods {
		if m.IsLoHa() {
			switch {
			case m.Down != nil || m.Up != nil || m.Mid != nil:
				return nil, fmt.Errorf("%s: module %s mixes LoHa and LoCon tensors", path, m.Name)
			case m.W1a == nil || m.W1b == nil || m.W2a == nil || m.W2b == nil:
				return nil, fmt.Errorf("%s: module %s lacks one of hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b", path, m.Name)
			case len(m.W1aShape) != 2 || len(m.W1bShape) != 2 || !slices.Equal(m.W1aShape, m.W2aShape) || !slices.Equal(m.W1bShape, m.W2bShape) ||
				m.W1aShape[1] != m.W1bShape[0]:
				return nil, fmt.Errorf("%s: module %s: LoHa shapes %v %v %v %v do not chain", path, m.Name, m.W1aShape, m.W1bShape, m.W2aShape, m.W2bShape)
			}
			f.Modules = append(f.Modules, m)
			continue
		}
		switch {
		case m.Down == nil || m.Up == nil:
			return nil, fmt.Errorf("%s: module %s lacks lora_down or lora_up", path, m.Name)
		case len(m.DownShape) < 2 || len(m.UpShape) < 2 || m.UpShape[1] != m.DownShape[0]:
			return nil, fmt.Errorf("%s: module %s: lora_up %v does not match lora_down %v", path, m.Name, m.UpShape, m.DownShape)
		case m.Mid != nil && (len(m.MidShape) != 4 || m.MidShape[0] != m.DownShape[0] || m.MidShape[1] != m.DownShape[0]):
			return nil, fmt.Errorf("%s: module %s: lora_mid %v does not match rank %d", path, m.Name, m.MidShape, m.DownShape[0])
		}
		f.Modules = append(f.Modules, m)
	}
	sort.Slice(f.Modules, func(i, j int) bool { return f.Modules[i].Name < f.Modules[j].Name })
	return f, nil
}

// Load copies a file's weights and alphas into the network. Every module of
// the network must be in the file with the same shapes (the file may not
// hold modules the network lacks).
func (n *Network) Load(f *File) error {
	byName := map[string]*Module{}
	for _, m := range n.Modules {
		byName[m.Name] = m
	}
	for _, fm := range f.Modules {
		if byName[fm.Name] == nil {
			return fmt.Errorf("%s: module %s matches no layer of the model", f.Path, fm.Name)
		}
	}
	for _, m := range n.Modules {
		fm, ok := f.Module(m.Name)
		if !ok {
			return fmt.Errorf("%s: no module %s", f.Path, m.Name)
		}
		if fm.IsLoHa() != (m.algo == AlgoLoHa) {
			return fmt.Errorf("%s: module %s: LoHa in the file %v, in the network %v", f.Path, m.Name, fm.IsLoHa(), m.algo == AlgoLoHa)
		}
		set := func(suffix string, v []float32, shape []int) error {
			en, _ := n.Entry(m.Name + suffix)
			if !en.Shape.Equal(shape) {
				return fmt.Errorf("%s: %s%s has shape %v, the network wants %v", f.Path, m.Name, suffix, shape, en.Shape)
			}
			return n.SetValues(m.Name+suffix, v)
		}
		m.Alpha = float32(m.Rank)
		if fm.HasAlpha && fm.Alpha != 0 {
			m.Alpha = fm.Alpha
		}
		if fm.IsLoHa() {
			for _, x := range []struct {
				suf string
				v   []float32
				sh  []int
			}{{".hada_w1_a", fm.W1a, fm.W1aShape}, {".hada_w1_b", fm.W1b, fm.W1bShape},
				{".hada_w2_a", fm.W2a, fm.W2aShape}, {".hada_w2_b", fm.W2b, fm.W2bShape}} {
				if err := set(x.suf, x.v, x.sh); err != nil {
					return err
				}
			}
			continue
		}
		if (fm.Mid != nil) != (m.Mid != nil) {
			return fmt.Errorf("%s: module %s: Tucker (lora_mid) in the file %v, in the network %v", f.Path, m.Name, fm.Mid != nil, m.Mid != nil)
		}
		if err := set(sufDown, fm.Down, fm.DownShape); err != nil {
			return err
		}
		if err := set(sufUp, fm.Up, fm.UpShape); err != nil {
			return err
		}
		if fm.Mid != nil {
			if err := set(sufMid, fm.Mid, fm.MidShape); err != nil {
				return err
			}
		}
	}
	return nil
}

// Tensors returns the network's file tensors (lora_down, lora_up, lora_mid
// and a scalar alpha per module) in dtype dt.
func (n *Network) Tensors(dt safetensors.DType) ([]safetensors.Tensor, error) {
	var out []safetensors.Tensor
	for _, en := range n.Entries {
		v := make([]float32, en.Shape.Numel())
		n.e.B.Download(v, n.e.B.View(n.Params, en.Offset, len(v)))
		t, err := safetensors.FromFloat32(en.Key, dt, en.Shape, v)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	for _, m := range n.Modules {
		t, err := safetensors.FromFloat32(m.Name+sufAlpha, dt, []int{}, []float32{m.Alpha})
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Save writes the network atomically in dtype dt with the metadata md plus
// the kohya hashes sshs_model_hash (sha256 of the data section) and
// sshs_legacy_hash (spec/fileformat.md §3).
func (n *Network) Save(path string, dt safetensors.DType, md map[string]string) error {
	ts, err := n.Tensors(dt)
	if err != nil {
		return err
	}
	meta, err := WithHashes(ts, md)
	if err != nil {
		return err
	}
	return safetensors.WriteFile(path, ts, meta)
}

// WithHashes returns md plus sshs_model_hash and sshs_legacy_hash for the
// given tensors.
func WithHashes(ts []safetensors.Tensor, md map[string]string) (map[string]string, error) {
	ss := map[string]string{}
	out := map[string]string{}
	for k, v := range md {
		out[k] = v
		if strings.HasPrefix(k, "ss_") {
			ss[k] = v
		}
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, ts, ss); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	hdr := int(binary.LittleEndian.Uint64(b[:8]))
	sum := sha256.Sum256(b[8+hdr:])
	out["sshs_model_hash"] = hex.EncodeToString(sum[:])
	var win []byte
	if len(b) > 1<<20 {
		win = b[1<<20 : min(len(b), 1<<20+1<<16)]
	}
	legacy := sha256.Sum256(win)
	out["sshs_legacy_hash"] = hex.EncodeToString(legacy[:])[:8]
	return out, nil
}

// Preset names a layer selection of SD 1.x's UNet (the text encoder's 72
// Linears are the same for all: CLIPAttention and CLIPMLP).
type Preset string

const (
	// PresetFull is current LyCORIS (≥ 1.9.0, preset "full"): every Linear
	// and Conv2d of the UNet's ResBlocks, transformers, samplers, plus
	// conv_in, conv_out and the two time-embedding Linears (282 layers).
	PresetFull Preset = "full"
	// Preset2023 is the LoCon package, LyCORIS < 1.9.0 and kohya's
	// networks.lora with a conv_dim network arg (the GUI's "Kohya LoCon"):
	// every Linear and Conv2d of Transformer2DModel, ResnetBlock2D,
	// Downsample2D and Upsample2D, i.e. full without the four single layers
	// (278 layers).
	Preset2023 Preset = "2023"
	// PresetLoRA is kohya's plain LoRA, networks.lora without conv_dim (the
	// GUI's "Standard"): only the Linear and Conv2d layers inside the
	// Transformer2DModel blocks — proj_in and proj_out (1×1 convs in SD
	// 1.x), attn1 and attn2 to_q, to_k, to_v, to_out.0, ff.net.0.proj and
	// ff.net.2 — 12 per transformer, 192 for SD 1.x's 16 transformers. It
	// is also LyCORIS' preset attn-mlp for SD 1.x.
	PresetLoRA Preset = "lora"

	// LyCORIS' other presets (spec/locon.md §3.2), SD 1.x part:
	// attn-mlp is PresetLoRA's UNet layers with the text encoder;
	// unet-transformer-only the same without the text encoder; attn-only
	// the attention projections (attn1/attn2 to_q, to_k, to_v, to_out.0)
	// and the text encoder's self-attention projections; full-lin every
	// Linear and 1×1 conv of transformers and ResBlocks (time_emb_proj,
	// conv_shortcut) plus the time-embedding Linears, no k×k conv;
	// unet-only is full without the text encoder; unet-convblock-only the
	// ResBlocks, the down/upsamplers, conv_in and conv_out.
	PresetAttnMLP             Preset = "attn-mlp"
	PresetUNetTransformerOnly Preset = "unet-transformer-only"
	PresetAttnOnly            Preset = "attn-only"
	PresetFullLin             Preset = "full-lin"
	PresetUNetOnly            Preset = "unet-only"
	PresetUNetConvblockOnly   Preset = "unet-convblock-only"
)

// Presets lists the presets SelectUNet knows.
var Presets = []Preset{PresetFull, Preset2023, PresetLoRA, PresetAttnMLP, PresetUNetTransformerOnly,
	PresetAttnOnly, PresetFullLin, PresetUNetOnly, PresetUNetConvblockOnly}

// WrapsTE reports whether preset p wraps text-encoder layers.
func (p Preset) WrapsTE() bool {
	switch p {
	case PresetUNetOnly, PresetUNetTransformerOnly, PresetUNetConvblockOnly:
		return false
	}
	return true
}

// SelectTE filters the text encoder's Linears by preset: all of them
// (CLIPAttention and CLIPMLP), only the self-attention projections
// (attn-only), or none (the unet-* presets).
func SelectTE(p Preset, linears []*nn.Linear) []*nn.Linear {
	if !p.WrapsTE() {
		return nil
	}
	if p != PresetAttnOnly {
		return linears
	}
	var out []*nn.Linear
	for _, l := range linears {
		if strings.Contains(l.Key, ".self_attn.") {
			out = append(out, l)
		}
	}
	return out
}

// SelectUNet filters a UNet's layer lists (unet.UNet.Layers) by preset.
func SelectUNet(p Preset, linears []*nn.Linear, convs []*nn.Conv2d) ([]*nn.Linear, []*nn.Conv2d, error) {
	var keep func(key string, kernel int) (bool, error)
	// by is keep from a test on the layer's diffusers path (kernel 1 for
	// Linear and 1×1 conv layers).
	by := func(test func(d string, kernel int) bool) func(string, int) (bool, error) {
		return func(key string, kernel int) (bool, error) {
			if !strings.HasPrefix(key, UNetPrefix) {
				return false, fmt.Errorf("lycoris: preset %s: %q is not a UNet layer", p, key)
			}
			d, err := DiffusersUNetPath(strings.TrimPrefix(key, UNetPrefix))
			if err != nil {
				return false, fmt.Errorf("lycoris: preset %s: %w", p, err)
			}
			return test("."+d, kernel), nil
		}
	}
	// A layer is inside a Transformer2DModel when its diffusers path runs
	// through an "attentions" list (down_blocks.i.attentions.j,
	// mid_block.attentions.0, up_blocks.i.attentions.j); likewise for
	// ResBlocks and samplers.
	in := func(d string, parts ...string) bool {
		for _, part := range parts {
			if strings.Contains(d, part) {
				return true
			}
		}
		return false
	}
	switch p {
	case PresetFull, PresetUNetOnly, "":
		return linears, convs, nil
	case Preset2023:
		single := map[string]bool{
			UNetPrefix + "time_embed.0": true, UNetPrefix + "time_embed.2": true,
			UNetPrefix + "input_blocks.0.0": true, UNetPrefix + "out.2": true,
		}
		keep = func(key string, _ int) (bool, error) { return !single[key], nil }
	case PresetLoRA, PresetAttnMLP, PresetUNetTransformerOnly:
		keep = by(func(d string, _ int) bool { return in(d, ".attentions.") })
	case PresetAttnOnly:
		keep = by(func(d string, _ int) bool { return in(d, ".attentions.") && in(d, ".attn1.", ".attn2.") })
	case PresetFullLin:
		keep = by(func(d string, k int) bool {
			return k == 1 && in(d, ".attentions.", ".resnets.", ".time_embedding.")
		})
	case PresetUNetConvblockOnly:
		keep = by(func(d string, _ int) bool {
			return in(d, ".resnets.", ".downsamplers.", ".upsamplers.") || d == ".conv_in" || d == ".conv_out"
		})
	default:
		var names []string
		for _, q := range Presets {
			names = append(names, string(q))
		}
		return nil, nil, fmt.Errorf("lycoris: unknown preset %q (%s)", p, strings.Join(names, ", "))
	}
	var l2 []*nn.Linear
	var c2 []*nn.Conv2d
	for _, l := range linears {
		ok, err := keep(l.Key, 1)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			l2 = append(l2, l)
		}
	}
	for _, c := range convs {
		ok, err := keep(c.Key, c.Kernel)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			c2 = append(c2, c)
		}
	}
	return l2, c2, nil
}
