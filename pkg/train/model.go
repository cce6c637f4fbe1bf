package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"loco/pkg/latentcache/encode"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
	"loco/pkg/tokenizer"
)

// UNetConfigFromFile infers the UNet hyper-parameters from the tensor
// shapes of a single-file checkpoint: model_channels from conv_in,
// channel_mult from each level's first ResBlock, num_res_blocks and the
// attention levels from the blocks present, context_dim from attn2.to_k,
// transformer_depth from the first transformer. The head count cannot be
// seen in the shapes; SD 1.x uses 8.
func UNetConfigFromFile(f TensorIndex) (unet.Config, error) {
	p := sd.UNetPrefix
	shape := func(k string) []int {
		i, ok := f.Info(p + k)
		if !ok {
			return nil
		}
		return i.Shape
	}
	cfg := unet.DefaultConfig()
	s := shape("input_blocks.0.0.weight")
	if len(s) != 4 {
		return cfg, fmt.Errorf("no UNet tensor %sinput_blocks.0.0.weight", p)
	}
	cfg.ModelChannels, cfg.InChannels = s[0], s[1]
	if s := shape("out.2.weight"); len(s) == 4 {
		cfg.OutChannels = s[0]
	}
	// Input blocks: ResBlocks at 1..; a downsampler (…N.0.op) ends a level.
	maxBlock := 0
	for _, n := range f.Names() {
		rest, ok := strings.CutPrefix(n, p+"input_blocks.")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(strings.SplitN(rest, ".", 2)[0]); err == nil && i > maxBlock {
			maxBlock = i
		}
	}
	var mult []int
	var attn []int
	resPerLevel, res, ds := 0, 0, 1
	for i := 1; i <= maxBlock; i++ {
		if shape(fmt.Sprintf("input_blocks.%d.0.op.weight", i)) != nil {
			if resPerLevel == 0 {
				resPerLevel = res
			}
			res = 0
			ds *= 2
			continue
		}
		w := shape(fmt.Sprintf("input_blocks.%d.0.in_layers.2.weight", i))
		if w == nil {
			return cfg, fmt.Errorf("%sinput_blocks.%d: neither a ResBlock nor a downsampler", p, i)
		}
		if res == 0 {
			mult = append(mult, w[0]/cfg.ModelChannels)
		}
		res++
		if shape(fmt.Sprintf("input_blocks.%d.1.proj_in.weight", i)) != nil && (len(attn) == 0 || attn[len(attn)-1] != ds) {
			attn = append(attn, ds)
		}
	}
	if resPerLevel == 0 {
		resPerLevel = res
	}
	if len(mult) == 0 || resPerLevel == 0 {
		return cfg, fmt.Errorf("no UNet input blocks under %s", p)
	}
	cfg.ChannelMult, cfg.NumResBlocks, cfg.AttentionResolutions = mult, resPerLevel, attn
	if s := shape("middle_block.1.transformer_blocks.0.attn2.to_k.weight"); len(s) == 2 {
		cfg.ContextDim = s[1]
	}
	depth := 0
	for shape(fmt.Sprintf("middle_block.1.transformer_blocks.%d.attn1.to_q.weight", depth)) != nil {
		depth++
	}
	if depth > 0 {
		cfg.TransformerDepth = depth
	}
	cfg.NumHeads = 8
	return cfg, cfg.Validate()
}

// CLIPConfigFromFile infers the text encoder's size from the shapes; the
// head count is width/64 (12 for SD 1.x), at least 1.
func CLIPConfigFromFile(f TensorIndex) (clip.Config, error) {
	p := sd.TEPrefix
	cfg := clip.DefaultConfig()
	i, ok := f.Info(p + "embeddings.token_embedding.weight")
	if !ok || len(i.Shape) != 2 {
		return cfg, fmt.Errorf("no text-encoder tensor %sembeddings.token_embedding.weight", p)
	}
	cfg.VocabSize, cfg.Width = i.Shape[0], i.Shape[1]
	if i, ok := f.Info(p + "embeddings.position_embedding.weight"); ok {
		cfg.ContextLength = i.Shape[0]
	}
	n := 0
	for {
		if _, ok := f.Info(fmt.Sprintf("%sencoder.layers.%d.self_attn.q_proj.weight", p, n)); !ok {
			break
		}
		n++
	}
	cfg.Layers = n
	if i, ok := f.Info(p + "encoder.layers.0.mlp.fc1.weight"); ok {
		cfg.MLP = i.Shape[0]
	}
	cfg.Heads = max(1, cfg.Width/64)
	return cfg, cfg.Validate()
}

// TensorIndex answers a tensor's dtype and shape by single-file key: a
// *safetensors.File or an *sd.Model (single file or diffusers folder).
type TensorIndex interface {
	Info(key string) (safetensors.TensorInfo, bool)
	Names() []string
}

// LoadModels opens an SD 1.x model — a single-file checkpoint or a
// diffusers folder — and builds the frozen UNet and text encoder on e
// (weights in dtype dt). It also returns the run identity (file name, both
// A1111 hashes) and the VAE hash, which the latent cache's entries must
// match (single files only: a diffusers folder's VAE is not hashed, so the
// cache check is skipped with a warning).
func LoadModels(path string, e *tensor.Engine, dt tensor.DType, tok *tokenizer.Tokenizer) (Models, RunInfo, string, error) {
	var info RunInfo
	m, err := sd.Open(path)
	if err != nil {
		return Models{}, info, "", err
	}
	defer m.Close()
	ucfg, err := UNetConfigFromFile(m)
	if err != nil {
		return Models{}, info, "", fmt.Errorf("%s: %v", path, err)
	}
	ccfg, err := CLIPConfigFromFile(m)
	if err != nil {
		return Models{}, info, "", fmt.Errorf("%s: %v", path, err)
	}
	if ccfg.Width != ucfg.ContextDim {
		return Models{}, info, "", fmt.Errorf("%s: text encoder width %d does not match the UNet's context_dim %d", path, ccfg.Width, ucfg.ContextDim)
	}
	src := m.Source(e, dt)
	ub := nn.NewBuilder(sd.UNetPrefix, src)
	u, err := unet.New(ub, ucfg)
	if err != nil {
		return Models{}, info, "", fmt.Errorf("%s: UNet: %v", path, err)
	}
	tb := nn.NewBuilder(sd.TEPrefix, src)
	te := clip.New(tb, ccfg)
	if err := tb.Err(); err != nil {
		return Models{}, info, "", fmt.Errorf("%s: text encoder: %v", path, err)
	}
	info.ModelName = filepath.Base(path)
	var vaeHash string
	if ck := m.Checkpoint; ck != nil {
		if _, ok := ck.F.Info("first_stage_model.encoder.conv_in.weight"); ok {
			if vaeHash, err = encode.HashVAE(ck.F); err != nil {
				return Models{}, info, "", err
			}
		}
		if info.ModelHash, info.NewModelHash, err = modelHashes(path); err != nil {
			return Models{}, info, "", err
		}
	}
	return Models{E: e, UNet: u, TE: te, Tok: tok}, info, vaeHash, nil
}

// modelHashes are kohya's ss_sd_model_hash (sha256 of the 64 KiB at 1 MiB,
// first 8 hex) and ss_new_sd_model_hash (sha256 of the file).
func modelHashes(path string) (old, full string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	win := make([]byte, 1<<16)
	n, _ := f.ReadAt(win, 1<<20)
	o := sha256.Sum256(win[:n])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(o[:])[:8], hex.EncodeToString(h.Sum(nil)), nil
}
