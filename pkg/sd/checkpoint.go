package sd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

// Key prefixes of a single-file SD 1.x checkpoint: the one internal key space.
const (
	UNetPrefix = "model.diffusion_model."
	VAEPrefix  = "first_stage_model."
	TEPrefix   = "cond_stage_model.transformer.text_model."
	emaPrefix  = "model_ema."
)

// ignoredKeys are keys of real SD 1.x checkpoints that no model consumes:
// the DDPM schedule buffers LDM stores, CLIP's position_ids, and the EMA
// copies (read only when EMA weights are asked for).
func ignoredKey(k string) bool {
	switch {
	case strings.HasPrefix(k, emaPrefix):
		return true
	case strings.HasSuffix(k, "embeddings.position_ids"):
		return true
	}
	switch k {
	case "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
		"sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
		"sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
		"posterior_mean_coef1", "posterior_mean_coef2", "logvar", "model_ema.decay", "model_ema.num_updates":
		return true
	}
	return false
}

// Checkpoint is an open single-file SD 1.x model.
type Checkpoint struct {
	Path string
	F    *safetensors.File
	// UseEMA makes the UNet read its EMA copy (model_ema.*) when present.
	UseEMA bool
}

// OpenCheckpoint opens a single-file SD 1.x .safetensors checkpoint and
// refuses what it cannot use with a message saying what was found: pickle
// files, SD 2.x, SDXL, inpainting and v-prediction models.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a folder; diffusers folders are not supported yet, use a single-file .safetensors checkpoint", path)
	}
	if err := refusePickle(path); err != nil {
		return nil, err
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Path: path, F: f}
	if err := c.identify(); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// Close releases the file.
func (c *Checkpoint) Close() error { return c.F.Close() }

func refusePickle(path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	fd, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fd.Close()
	// A safetensors file starts with an 8-byte header length and then '{';
	// a pickle with the PROTO opcode (0x80, version), a zip (torch ≥ 1.6)
	// with "PK".
	var head [9]byte
	n, _ := io.ReadFull(fd, head[:])
	looksST := n == 9 && head[8] == '{'
	pickle := !looksST && n >= 2 && (head[0] == 0x80 && head[1] <= 5 || bytes.Equal(head[:2], []byte("PK")))
	if pickle || ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin" {
		return fmt.Errorf("%s: a PyTorch pickle checkpoint; loco reads only .safetensors (pickle files can run code). "+
			"Convert it once, for example with the kohya_ss GUI's Utilities > Convert model, or "+
			"`python -c \"import torch, safetensors.torch as s; sd=torch.load('%s', map_location='cpu'); "+
			"s.save_file({k:v.contiguous() for k,v in sd.get('state_dict', sd).items() if hasattr(v,'contiguous')}, 'model.safetensors')\"`",
			path, filepath.Base(path))
	}
	return nil
}

// identify checks that the file is an SD 1.x (eps-prediction, 4-channel)
// checkpoint.
func (c *Checkpoint) identify() error {
	has := func(k string) bool { _, ok := c.F.Info(k); return ok }
	shape := func(k string) []int { i, _ := c.F.Info(k); return i.Shape }
	for _, k := range c.F.Names() {
		switch {
		case strings.HasPrefix(k, "conditioner.embedders."):
			return fmt.Errorf("%s: an SDXL checkpoint (found %s); loco trains SD 1.x only", c.Path, k)
		case strings.HasPrefix(k, "cond_stage_model.model."):
			return fmt.Errorf("%s: an SD 2.x checkpoint (OpenCLIP text encoder, found %s); loco trains SD 1.x only", c.Path, k)
		}
	}
	in := UNetPrefix + "input_blocks.0.0.weight"
	if !has(in) {
		if has("down_blocks.0.resnets.0.conv1.weight") || has("unet.conv_in.weight") {
			return fmt.Errorf("%s: diffusers-format weights; give the single-file checkpoint (model.diffusion_model.* keys)", c.Path)
		}
		return fmt.Errorf("%s: not an SD 1.x checkpoint: no tensor %s", c.Path, in)
	}
	if s := shape(in); len(s) == 4 && s[1] != 4 {
		return fmt.Errorf("%s: UNet input has %d channels (an inpainting or instruct model); loco trains 4-channel SD 1.x models", c.Path, s[1])
	}
	if s := shape(UNetPrefix + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"); len(s) == 2 && s[1] == 1024 {
		return fmt.Errorf("%s: cross-attention context width 1024, an SD 2.x UNet; loco trains SD 1.x only", c.Path)
	}
	md := c.F.Metadata()
	if p := md["modelspec.prediction_type"]; p == "v" || p == "v_prediction" {
		return fmt.Errorf("%s: a v-prediction model (modelspec.prediction_type=%s); loco trains eps-prediction SD 1.x", c.Path, p)
	}
	return nil
}

// emaKey is the EMA copy's name of a UNet key: "model_ema." + the key after
// "model." with its dots removed.
func emaKey(k string) string {
	return emaPrefix + strings.ReplaceAll(strings.TrimPrefix(k, "model."), ".", "")
}

// Source returns a weight source over the checkpoint for the engine.
func (c *Checkpoint) Source(e *tensor.Engine, dt tensor.DType) *CheckpointSource {
	return &CheckpointSource{FileSource: NewFileSource(c.F, e, dt), ema: c.UseEMA}
}

// CheckpointSource is a FileSource that can redirect UNet keys to the EMA copy.
type CheckpointSource struct {
	*FileSource
	ema bool
}

// Load implements nn.Source.
func (s *CheckpointSource) Load(key string, shape tensor.Shape) (*tensor.Tensor, error) {
	if s.ema && strings.HasPrefix(key, UNetPrefix) {
		if k := emaKey(key); s.hasKey(k) {
			t, err := s.FileSource.Load(k, shape)
			s.used[key] = true
			return t, err
		}
	}
	return s.FileSource.Load(key, shape)
}

func (s *CheckpointSource) hasKey(k string) bool { _, ok := s.F.Info(k); return ok }

// Unexpected lists keys under prefix that were neither loaded nor on the
// ignore list (position_ids, EMA copies, LDM schedule buffers).
func (s *FileSource) Unexpected(prefix string) []string {
	var out []string
	for _, k := range s.Unused(prefix) {
		if !ignoredKey(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
