package merge

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"loco/pkg/lycoris"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
)

// Layer is one layer a LoCon module may change: its kohya name, the
// checkpoint key of its weight and the weight's shape.
type Layer struct {
	Name   string // kohya module name, e.g. lora_unet_conv_in
	Key    string // checkpoint weight key, e.g. model.diffusion_model.input_blocks.0.0.weight
	Shape  []int  // [out, in] (Linear) or [out, in, k, k] (Conv2d)
	Conv   bool
	Kernel int // 1 for Linear
}

// Out and In are the weight's output and input sizes; Cols is its 2-D
// view's width (in·k·k).
func (l *Layer) Out() int  { return l.Shape[0] }
func (l *Layer) In() int   { return l.Shape[1] }
func (l *Layer) Cols() int { return numel(l.Shape) / l.Shape[0] }

// Table maps kohya module names to layers. It is built forward from the
// models' own layer lists (unet.UNet.Layers, clip.Model.Linears, built in
// shape-only mode) and lycoris.KohyaName, never by parsing names back.
type Table struct {
	Layers map[string]*Layer
	// TEKeyPrefix is the prefix under which this checkpoint stores the text
	// encoder ("cond_stage_model.transformer.text_model." or, for older
	// files, "cond_stage_model.transformer."); empty when it has none.
	TEKeyPrefix string
	UNet        bool // the UNet part is present
}

// Names returns the layer names, sorted.
func (t *Table) Names() []string {
	out := make([]string, 0, len(t.Layers))
	for n := range t.Layers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// NewTable builds the layer table of a UNet and (when te is not nil) a text
// encoder with these configurations. teKeyPrefix is where the checkpoint
// keeps the text encoder (see Table.TEKeyPrefix).
func NewTable(u *unet.Config, te *clip.Config, teKeyPrefix string) (*Table, error) {
	t := &Table{Layers: map[string]*Layer{}, TEKeyPrefix: teKeyPrefix}
	add := func(moduleKey string, shape []int, conv bool, k int) error {
		name, err := lycoris.KohyaName(moduleKey)
		if err != nil {
			return err
		}
		if _, dup := t.Layers[name]; dup {
			return fmt.Errorf("merge: two layers are named %s", name)
		}
		t.Layers[name] = &Layer{Name: name, Key: moduleKey + ".weight", Shape: shape, Conv: conv, Kernel: k}
		return nil
	}
	if u != nil {
		b := nn.NewBuilder(sd.UNetPrefix, nil)
		m, err := unet.New(b, *u)
		if err != nil {
			return nil, err
		}
		lins, convs := m.Layers()
		for _, l := range lins {
			if err := add(l.Key, []int{l.Out, l.In}, false, 1); err != nil {
				return nil, err
			}
		}
		for _, c := range convs {
			if err := add(c.Key, []int{c.Out, c.In, c.Kernel, c.Kernel}, true, c.Kernel); err != nil {
				return nil, err
			}
		}
		t.UNet = true
	}
	if te != nil {
		if err := te.Validate(); err != nil {
			return nil, err
		}
		b := nn.NewBuilder(clip.Prefix, nil)
		m := clip.New(b, *te)
		for _, nl := range m.Linears() {
			if err := add(nl.L.Key, []int{nl.L.Out, nl.L.In}, false, 1); err != nil {
				return nil, err
			}
		}
		// Checkpoints without the text_model level keep the same layers one
		// level up.
		if teKeyPrefix != "" && teKeyPrefix != clip.Prefix {
			for _, l := range t.Layers {
				if strings.HasPrefix(l.Key, clip.Prefix) {
					l.Key = teKeyPrefix + strings.TrimPrefix(l.Key, clip.Prefix)
				}
			}
		}
	}
	return t, nil
}

// SD15Table is the table of a standard SD 1.x checkpoint (both models at
// their default sizes), used where no checkpoint is at hand (inspect,
// resize, combine).
func SD15Table() *Table {
	u, c := unet.DefaultConfig(), clip.DefaultConfig()
	t, err := NewTable(&u, &c, clip.Prefix)
	if err != nil {
		panic(err) // the default configurations always build
	}
	return t
}

// CheckpointTable builds the table of an open checkpoint: the UNet and text
// encoder sizes are read from its tensor shapes (not assumed), the models
// are built shape-only with them, and every layer is checked to exist in
// the file with the shape the model declares.
func CheckpointTable(f *safetensors.File) (*Table, error) {
	ucfg, err := unetConfigOf(f)
	if err != nil {
		return nil, err
	}
	tcfg, tePrefix, err := clipConfigOf(f)
	if err != nil {
		return nil, err
	}
	t, err := NewTable(ucfg, tcfg, tePrefix)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	var missing []string
	for _, n := range t.Names() {
		l := t.Layers[n]
		info, ok := f.Info(l.Key)
		switch {
		case !ok:
			missing = append(missing, l.Key)
		case !slices.Equal(info.Shape, l.Shape):
			return nil, fmt.Errorf("%s: tensor %s has shape %v, the model built from the checkpoint's sizes wants %v", f.Path(), l.Key, info.Shape, l.Shape)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: the checkpoint lacks %d layer weight(s) of an SD 1.x model: %s", f.Path(), len(missing), list(missing, 6))
	}
	return t, nil
}

var (
	inBlockRe = regexp.MustCompile(`^model\.diffusion_model\.input_blocks\.(\d+)\.(\d+)\.`)
	tfBlockRe = regexp.MustCompile(`\.transformer_blocks\.(\d+)\.`)
	teLayerRe = regexp.MustCompile(`encoder\.layers\.(\d+)\.`)
)

// unetConfigOf reads the UNet's hyper-parameters from the checkpoint's
// shapes: model channels from conv_in, the levels and their channel
// multipliers from the input blocks' ResBlocks and downsamplers, which
// levels have attention, the transformer depth and the context width. The
// head count does not change any shape; 8 (SD 1.x) is used.
func unetConfigOf(f *safetensors.File) (*unet.Config, error) {
	shape := func(k string) []int {
		i, ok := f.Info(k)
		if !ok {
			return nil
		}
		return i.Shape
	}
	p := sd.UNetPrefix
	cin := shape(p + "input_blocks.0.0.weight")
	cout := shape(p + "out.2.weight")
	if len(cin) != 4 || len(cout) != 4 {
		return nil, fmt.Errorf("%s: no UNet (%sinput_blocks.0.0.weight and out.2.weight)", f.Path(), p)
	}
	cfg := &unet.Config{InChannels: cin[1], OutChannels: cout[0], ModelChannels: cin[0], NumHeads: 8}
	// Input blocks 1..N: ResBlock (.0.in_layers.2) or downsampler (.0.op).
	type blk struct {
		res, attn, down bool
		out             int
	}
	blocks := map[int]*blk{}
	maxN, depth := 0, 0
	for _, k := range f.Names() {
		m := inBlockRe.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if n == 0 {
			continue
		}
		b := blocks[n]
		if b == nil {
			b = &blk{}
			blocks[n] = b
		}
		maxN = max(maxN, n)
		rest := k[len(m[0]):]
		switch {
		case m[2] == "0" && rest == "in_layers.2.weight":
			b.res, b.out = true, shape(k)[0]
		case m[2] == "0" && rest == "op.weight":
			b.down = true
		case m[2] == "1" && rest == "proj_in.weight":
			b.attn = true
		case m[2] == "1":
			if tm := tfBlockRe.FindStringSubmatch("." + rest); tm != nil {
				d, _ := strconv.Atoi(tm[1])
				depth = max(depth, d+1)
			}
			if strings.HasSuffix(rest, "attn2.to_k.weight") {
				cfg.ContextDim = shape(k)[1]
			}
		}
	}
	level, ds, inLevel := 0, 1, 0
	attnAt := map[int]bool{}
	for n := 1; n <= maxN; n++ {
		b := blocks[n]
		switch {
		case b == nil:
			return nil, fmt.Errorf("%s: UNet input block %d is missing", f.Path(), n)
		case b.down:
			if level == 0 {
				cfg.NumResBlocks = inLevel
			}
			level, ds, inLevel = level+1, ds*2, 0
		case b.res:
			if inLevel == 0 {
				if b.out%cfg.ModelChannels != 0 {
					return nil, fmt.Errorf("%s: UNet input block %d has %d channels, not a multiple of %d", f.Path(), n, b.out, cfg.ModelChannels)
				}
				cfg.ChannelMult = append(cfg.ChannelMult, b.out/cfg.ModelChannels)
			}
			inLevel++
			if b.attn {
				attnAt[ds] = true
			}
		default:
			return nil, fmt.Errorf("%s: UNet input block %d is neither a ResBlock nor a downsampler", f.Path(), n)
		}
	}
	if cfg.NumResBlocks == 0 {
		cfg.NumResBlocks = inLevel
	}
	for d := range attnAt {
		cfg.AttentionResolutions = append(cfg.AttentionResolutions, d)
	}
	sort.Ints(cfg.AttentionResolutions)
	cfg.TransformerDepth = max(depth, 1)
	if cfg.ContextDim == 0 {
		cfg.ContextDim = 768
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path(), err)
	}
	return cfg, nil
}

// clipConfigOf reads the text encoder's sizes from the checkpoint; nil when
// the checkpoint has no text encoder.
func clipConfigOf(f *safetensors.File) (*clip.Config, string, error) {
	prefix := ""
	for _, p := range []string{clip.Prefix, "cond_stage_model.transformer."} {
		if _, ok := f.Info(p + "embeddings.token_embedding.weight"); ok {
			prefix = p
			break
		}
	}
	if prefix == "" {
		return nil, "", nil
	}
	tok, _ := f.Info(prefix + "embeddings.token_embedding.weight")
	pos, _ := f.Info(prefix + "embeddings.position_embedding.weight")
	if len(tok.Shape) != 2 || len(pos.Shape) != 2 {
		return nil, "", fmt.Errorf("%s: text encoder embeddings have shapes %v and %v", f.Path(), tok.Shape, pos.Shape)
	}
	cfg := clip.DefaultConfig()
	cfg.VocabSize, cfg.Width, cfg.ContextLength = tok.Shape[0], tok.Shape[1], pos.Shape[0]
	layers := 0
	for _, k := range f.Names() {
		if !strings.HasPrefix(k, prefix+"encoder.layers.") {
			continue
		}
		if m := teLayerRe.FindStringSubmatch(k); m != nil {
			n, _ := strconv.Atoi(m[1])
			layers = max(layers, n+1)
		}
	}
	cfg.Layers = layers
	if fc1, ok := f.Info(prefix + "encoder.layers.0.mlp.fc1.weight"); ok && len(fc1.Shape) == 2 {
		cfg.MLP = fc1.Shape[0]
	}
	// Heads change no shape; pick a divisor of the width.
	cfg.Heads = 1
	if cfg.Width%64 == 0 {
		cfg.Heads = cfg.Width / 64
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", fmt.Errorf("%s: text encoder: %w", f.Path(), err)
	}
	return &cfg, prefix, nil
}

func numel(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// list joins up to n items and says how many more there are.
func list(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" … (%d more)", len(items)-n)
}
