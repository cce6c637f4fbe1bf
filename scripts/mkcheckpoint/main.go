// Command mkcheckpoint writes a random-weight single-file SD 1.x checkpoint
// with the real key names (UNet, VAE and CLIP text encoder, plus the LDM
// schedule buffers and CLIP's position_ids that real checkpoints carry), for
// benchmarks and end-to-end runs without a real model.
//
//	go run ./scripts/mkcheckpoint -size sd15 -dtype fp16 -o /tmp/sd15-random.safetensors
//	go run ./scripts/mkcheckpoint -size tiny -o testdata/tiny.safetensors
//
// -size sd15 is SD 1.5's architecture (about 2.1 GB in fp16), written tensor
// by tensor so memory stays at one tensor. -size tiny is the golden tiny
// configs (UNet model_channels 32, context 32; VAE ch 32; CLIP width 32,
// 3 layers) and also writes a small CLIP vocabulary of its own making,
// bpe_simple_vocab_16e6.txt.gz next to the checkpoint (-vocab to place it
// elsewhere), whose size the tiny text encoder's vocab_size matches. The
// configs are recorded in the file's metadata (loco.*_config, JSON).
// Same flags and seed give the same bytes.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
)

// maxTinyMerges bounds the tiny vocabulary's merges.
const maxTinyMerges = 1000

// options are the command's flags.
type options struct {
	size, dtype, out, vocab string
	seed                    uint64
}

// configs are the three models' configurations of a size.
type configs struct {
	UNet unet.Config
	VAE  vae.Config
	CLIP clip.Config
}

// sizeConfigs returns the configs of size; for tiny, vocab is the CLIP
// vocabulary size.
func sizeConfigs(size string, vocab int) (configs, error) {
	switch size {
	case "sd15":
		return configs{unet.DefaultConfig(), vae.DefaultConfig(), clip.DefaultConfig()}, nil
	case "tiny":
		u := unet.DefaultConfig()
		u.ModelChannels, u.ContextDim = 32, 32
		v := vae.DefaultConfig()
		v.Ch = 32
		c := clip.Config{VocabSize: vocab, ContextLength: 77, Width: 32, Layers: 3, Heads: 1, MLP: 128, Eps: 1e-5}
		return configs{u, v, c}, nil
	}
	return configs{}, fmt.Errorf("-size %q: want tiny or sd15", size)
}

// params lists every parameter of the three models, in declaration order,
// by building them in shape-only mode.
func (c configs) params() ([]nn.ParamSpec, error) {
	ub := nn.NewBuilder(sd.UNetPrefix, nil)
	if _, err := unet.New(ub, c.UNet); err != nil {
		return nil, err
	}
	vb := nn.NewBuilder(sd.VAEPrefix, nil)
	vae.New(vb, c.VAE)
	cb := nn.NewBuilder(sd.TEPrefix, nil)
	clip.New(cb, c.CLIP)
	for _, b := range []*nn.Builder{vb, cb} {
		if err := b.Err(); err != nil {
			return nil, err
		}
	}
	out := append(ub.Params(), vb.Params()...)
	return append(out, cb.Params()...), nil
}

// generate writes the checkpoint (and, for tiny, the vocabulary) and
// returns the paths written.
func generate(o options) ([]string, error) {
	var dt safetensors.DType
	switch o.dtype {
	case "fp16":
		dt = safetensors.F16
	case "fp32":
		dt = safetensors.F32
	case "bf16":
		dt = safetensors.BF16
	default:
		return nil, fmt.Errorf("-dtype %q: want fp16, bf16 or fp32", o.dtype)
	}
	if o.out == "" {
		return nil, fmt.Errorf("-o: no output path given")
	}
	var written []string
	var merges [][2]string
	if o.size == "tiny" {
		merges = learnMerges(maxTinyMerges)
		vp := o.vocab
		if vp == "" {
			vp = filepath.Join(filepath.Dir(o.out), "bpe_simple_vocab_16e6.txt.gz")
		}
		if err := writeVocab(vp, merges); err != nil {
			return nil, err
		}
		written = append(written, vp)
	}
	cfg, err := sizeConfigs(o.size, vocabSize(merges))
	if err != nil {
		return nil, err
	}
	ps, err := cfg.params()
	if err != nil {
		return nil, err
	}
	md := map[string]string{
		"format":         "pt",
		"loco.generator": "scripts/mkcheckpoint (random weights, not a trained model)",
		"loco.size":      o.size,
		"loco.seed":      strconv.FormatUint(o.seed, 10),
	}
	for k, v := range map[string]any{"loco.unet_config": cfg.UNet, "loco.vae_config": cfg.VAE, "loco.clip_config": cfg.CLIP} {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		md[k] = string(raw)
	}
	if err := sd.WriteRandomCheckpoint(o.out, ps, dt, o.seed, md); err != nil {
		return nil, err
	}
	return append(written, o.out), nil
}

func main() {
	var o options
	flag.StringVar(&o.size, "size", "tiny", "model size: tiny (golden tiny configs) or sd15 (SD 1.5)")
	flag.StringVar(&o.dtype, "dtype", "fp16", "weight dtype: fp16, bf16 or fp32")
	flag.StringVar(&o.out, "o", "", "output .safetensors path (required)")
	flag.StringVar(&o.vocab, "vocab", "", "tiny only: where to write the CLIP vocabulary (default: bpe_simple_vocab_16e6.txt.gz beside -o)")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed of the weights")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: mkcheckpoint [-size tiny|sd15] [-dtype fp16|bf16|fp32] [-seed N] [-vocab PATH] -o model.safetensors\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	paths, err := generate(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkcheckpoint: error: %v\n", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Fprintf(os.Stderr, "mkcheckpoint: wrote %s\n", p)
	}
}
