package sd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

// CLIPModelPrefix is the single-file prefix under which Hugging Face's
// CLIPTextModel is nested; its keys below it ("text_model.…") are the keys
// of a diffusers folder's text_encoder/model.safetensors.
const CLIPModelPrefix = "cond_stage_model.transformer."

// diffusersPart is one model of a diffusers folder.
type diffusersPart struct {
	dir    string // sub-folder: unet, vae, text_encoder
	prefix string // its single-file prefix
	table  *KeyTable
	path   string // the weights file (or, when absent, the one looked for)
	f      *safetensors.File
}

// Diffusers is an open diffusers model folder, seen through the key tables
// in the single-file key space: Info and Names speak single-file names and
// shapes, and Source loads by them.
type Diffusers struct {
	Dir   string
	parts []*diffusersPart
}

// weightFiles are the file names tried in each sub-folder, in order.
var weightFiles = map[string][]string{
	"unet":         {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"},
	"vae":          {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"},
	"text_encoder": {"model.safetensors", "model.fp16.safetensors"},
}

// IsDiffusers reports whether dir looks like a diffusers model folder
// (model_index.json or a unet/ sub-folder).
func IsDiffusers(dir string) bool {
	for _, p := range []string{"model_index.json", "unet"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return true
		}
	}
	return false
}

// OpenDiffusers opens a diffusers SD 1.x folder: unet/, vae/ and
// text_encoder/ with their safetensors weights (a fp16 variant is used when
// the full one is absent). The UNet is required; a missing VAE or text
// encoder is reported when one of its tensors is loaded. Block layouts come
// from each sub-folder's config.json when present (SD 1.x otherwise). SD
// 2.x, SDXL, inpainting and v-prediction folders are refused with what was
// found; pickle-only (.bin) weights get a conversion hint.
func OpenDiffusers(dir string) (*Diffusers, error) {
	d := &Diffusers{Dir: dir}
	if _, err := os.Stat(filepath.Join(dir, "text_encoder_2")); err == nil {
		return nil, fmt.Errorf("%s: has text_encoder_2/, an SDXL folder; loco trains SD 1.x only", dir)
	}
	ul, vl, err := readLayouts(dir)
	if err != nil {
		return nil, err
	}
	ut, err := UNetTable(ul)
	if err != nil {
		return nil, fmt.Errorf("%s: unet/config.json: %v", dir, err)
	}
	vt, err := VAETable(vl)
	if err != nil {
		return nil, fmt.Errorf("%s: vae/config.json: %v", dir, err)
	}
	d.parts = []*diffusersPart{
		{dir: "unet", prefix: UNetPrefix, table: ut},
		{dir: "vae", prefix: VAEPrefix, table: vt},
		{dir: "text_encoder", prefix: CLIPModelPrefix, table: CLIPTable()},
	}
	for _, p := range d.parts {
		if err := p.open(dir); err != nil {
			d.Close()
			return nil, err
		}
	}
	if d.parts[0].f == nil {
		d.Close()
		return nil, fmt.Errorf("%s: no UNet weights: %s not found", dir, d.parts[0].path)
	}
	if err := d.identify(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (p *diffusersPart) open(root string) error {
	sub := filepath.Join(root, p.dir)
	names := weightFiles[p.dir]
	p.path = filepath.Join(sub, names[0])
	for _, n := range names {
		path := filepath.Join(sub, n)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		if err := refusePickle(path); err != nil {
			return err
		}
		f, err := safetensors.Open(path)
		if err != nil {
			return err
		}
		p.path, p.f = path, f
		return nil
	}
	for _, n := range []string{"diffusion_pytorch_model.bin", "pytorch_model.bin"} {
		if path := filepath.Join(sub, n); fileExists(path) {
			return refusePickle(path)
		}
	}
	return nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// readLayouts reads the block layouts from unet/config.json and
// vae/config.json (diffusers names), falling back to SD 1.x.
func readLayouts(dir string) (UNetLayout, VAELayout, error) {
	ul, vl := SD15UNetLayout(), SD15VAELayout()
	var uc struct {
		InChannels     int      `json:"in_channels"`
		LayersPerBlock int      `json:"layers_per_block"`
		DownBlockTypes []string `json:"down_block_types"`
		CrossAttnDim   any      `json:"cross_attention_dim"`
	}
	path := filepath.Join(dir, "unet", "config.json")
	if ok, err := readJSON(path, &uc); err != nil {
		return ul, vl, err
	} else if ok {
		if uc.InChannels != 0 && uc.InChannels != 4 {
			return ul, vl, fmt.Errorf("%s: in_channels %d (an inpainting or instruct model); loco trains 4-channel SD 1.x models", path, uc.InChannels)
		}
		if v, ok := uc.CrossAttnDim.(float64); ok && (v == 1024 || v == 2048) {
			return ul, vl, fmt.Errorf("%s: cross_attention_dim %v, an SD 2.x (1024) or SDXL (2048) UNet; loco trains SD 1.x only", path, v)
		}
		if uc.LayersPerBlock > 0 {
			ul.ResBlocks = uc.LayersPerBlock
		}
		if len(uc.DownBlockTypes) > 0 {
			ul.Levels = len(uc.DownBlockTypes)
			ul.Attn = make([]bool, ul.Levels)
			for i, t := range uc.DownBlockTypes {
				ul.Attn[i] = strings.HasPrefix(t, "CrossAttn")
			}
		}
	}
	var vc struct {
		LayersPerBlock   int   `json:"layers_per_block"`
		BlockOutChannels []int `json:"block_out_channels"`
	}
	path = filepath.Join(dir, "vae", "config.json")
	if ok, err := readJSON(path, &vc); err != nil {
		return ul, vl, err
	} else if ok {
		if vc.LayersPerBlock > 0 {
			vl.ResBlocks = vc.LayersPerBlock
		}
		if len(vc.BlockOutChannels) > 0 {
			vl.Levels = len(vc.BlockOutChannels)
		}
	}
	var sc struct {
		PredictionType string `json:"prediction_type"`
	}
	path = filepath.Join(dir, "scheduler", "scheduler_config.json")
	if ok, err := readJSON(path, &sc); err != nil {
		return ul, vl, err
	} else if ok && sc.PredictionType == "v_prediction" {
		return ul, vl, fmt.Errorf("%s: prediction_type v_prediction, a v-prediction model; loco trains eps-prediction SD 1.x", path)
	}
	return ul, vl, nil
}

// readJSON decodes path into v; a missing file is not an error (false).
func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s: not a valid config: %v", path, err)
	}
	return true, nil
}

// identify refuses what the tensors show is not SD 1.x.
func (d *Diffusers) identify() error {
	u := d.parts[0]
	if i, ok := u.f.Info("conv_in.weight"); !ok {
		return fmt.Errorf("%s: not a diffusers UNet: no tensor conv_in.weight", u.path)
	} else if len(i.Shape) == 4 && i.Shape[1] != 4 {
		return fmt.Errorf("%s: tensor conv_in.weight has %d input channels (an inpainting or instruct model); loco trains 4-channel SD 1.x models", u.path, i.Shape[1])
	}
	if i, ok := u.f.Info("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"); ok && len(i.Shape) == 2 && i.Shape[1] == 1024 {
		return fmt.Errorf("%s: cross-attention context width %d (SD 2.x has 1024); loco trains SD 1.x only", u.path, i.Shape[1])
	}
	if te := d.parts[2]; te.f != nil {
		if i, ok := te.f.Info("text_model.final_layer_norm.weight"); ok && len(i.Shape) == 1 && i.Shape[0] == 1024 {
			return fmt.Errorf("%s: text encoder width 1024 (OpenCLIP ViT-H, an SD 2.x model); loco trains SD 1.x only", te.path)
		}
	}
	return nil
}

// Close releases the files.
func (d *Diffusers) Close() error {
	var first error
	for _, p := range d.parts {
		if p.f != nil {
			if err := p.f.Close(); err != nil && first == nil {
				first = err
			}
			p.f = nil
		}
	}
	return first
}

// part finds the model a single-file key belongs to, and the key below its
// prefix.
func (d *Diffusers) part(key string) (*diffusersPart, string, bool) {
	for _, p := range d.parts {
		if rest, ok := strings.CutPrefix(key, p.prefix); ok {
			return p, rest, true
		}
	}
	return nil, "", false
}

// locate finds the stored tensor of a single-file key: its part, its
// diffusers name (an older alias when that is what the file holds) and
// whether it is stored squeezed.
func (d *Diffusers) locate(key string) (p *diffusersPart, m Mapped, err error) {
	p, rest, ok := d.part(key)
	if !ok {
		return nil, m, fmt.Errorf("%s: no diffusers model holds %s (not a UNet, VAE or text-encoder key)", d.Dir, key)
	}
	if m, ok = p.table.ToDiffusers(rest); !ok {
		return p, m, fmt.Errorf("%s: %s has no diffusers name in the %s table", d.Dir, key, p.dir)
	}
	if p.f == nil {
		return p, m, fmt.Errorf("%s: missing tensor %s (%s): no such file", p.path, m.Key, key)
	}
	if _, ok := p.f.Info(m.Key); !ok {
		for _, a := range p.table.aliasesOf(rest) {
			if _, ok := p.f.Info(a); ok {
				m.Key = a
				break
			}
		}
	}
	return p, m, nil
}

// Info returns the description of a tensor by its single-file name, with
// its single-file shape.
func (d *Diffusers) Info(key string) (safetensors.TensorInfo, bool) {
	p, m, err := d.locate(key)
	if err != nil {
		return safetensors.TensorInfo{}, false
	}
	i, ok := p.f.Info(m.Key)
	if ok && m.Squeeze && len(i.Shape) == 2 {
		i.Shape = append(i.Shape, 1, 1)
	}
	return i, ok
}

// Names lists the single-file names of every tensor the folder holds that
// the tables map, sorted.
func (d *Diffusers) Names() []string {
	var out []string
	for _, p := range d.parts {
		if p.f == nil {
			continue
		}
		for _, k := range p.f.Names() {
			if m, ok := p.table.FromDiffusers(k); ok {
				out = append(out, p.prefix+m.Key)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Source returns a weight source over the folder that loads by
// single-file names, converting each tensor to dt as it is read.
func (d *Diffusers) Source(e *tensor.Engine, dt tensor.DType) *DiffusersSource {
	return &DiffusersSource{D: d, E: e, DType: dt, used: map[string]bool{}}
}

// DiffusersSource is an nn.Source over a diffusers folder.
type DiffusersSource struct {
	D     *Diffusers
	E     *tensor.Engine
	DType tensor.DType

	used map[string]bool // part dir + "/" + diffusers key
}

// Load implements nn.Source: key and shape are single-file ones.
func (s *DiffusersSource) Load(key string, shape tensor.Shape) (*tensor.Tensor, error) {
	p, m, err := s.D.locate(key)
	if err != nil {
		return nil, err
	}
	info, ok := p.f.Info(m.Key)
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %s (%s, shape %v)", p.path, m.Key, key, shape)
	}
	want := shape
	if m.Squeeze && len(shape) == 4 && shape[2] == 1 && shape[3] == 1 && len(info.Shape) == 2 {
		want = shape[:2]
	}
	if !tensor.Shape(info.Shape).Equal(want) {
		return nil, fmt.Errorf("%s: tensor %s (%s) has shape %v, want %v", p.path, m.Key, key, tensor.Shape(info.Shape), want)
	}
	t, err := loadTensor(p.f, m.Key, s.E, s.DType, shape)
	if err != nil {
		return nil, err
	}
	s.used[p.dir+"/"+m.Key] = true
	return t, nil
}

// diffusersIgnored are tensors of real diffusers folders that no model
// consumes.
func diffusersIgnored(k string) bool {
	return strings.HasSuffix(k, "embeddings.position_ids")
}

// Unexpected lists the folder's tensors of the models under the
// single-file prefix (for example UNetPrefix, TEPrefix, or "" for all) that
// were not loaded and are not on the ignore list, as "dir/key" names.
func (s *DiffusersSource) Unexpected(prefix string) []string {
	var out []string
	for _, p := range s.D.parts {
		if p.f == nil || !(strings.HasPrefix(p.prefix, prefix) || strings.HasPrefix(prefix, p.prefix)) {
			continue
		}
		for _, k := range p.f.Names() {
			if s.used[p.dir+"/"+k] || diffusersIgnored(k) {
				continue
			}
			if m, ok := p.table.FromDiffusers(k); ok && !strings.HasPrefix(p.prefix+m.Key, prefix) {
				continue // mapped outside the asked prefix
			}
			out = append(out, p.dir+"/"+k)
		}
	}
	sort.Strings(out)
	return out
}
