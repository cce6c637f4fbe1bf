package sample

import (
	"fmt"
	"image"
	"image/color"
	"math"

	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
	"loco/pkg/tokenizer"
	"loco/pkg/train"
)

// MaxChunks is the number of 75-token chunks a prompt may use (kohya's
// max_embeddings_multiples = 3); longer prompts are truncated.
const MaxChunks = 3

// Pipeline makes sample images from a base model (with any network
// already attached to its layers).
type Pipeline struct {
	E        *tensor.Engine
	UNet     *unet.UNet
	CLIP     *clip.Model
	VAE      *vae.VAE
	Tok      *tokenizer.Tokenizer
	ClipSkip int             // 0 or 1: the last layer; 2: the penultimate
	Schedule *train.Schedule // nil: train.SD1()
	Sampler  Config          // used when a prompt names none
	// ModelName, when set, is written as "Model: …" in the PNG parameters.
	ModelName string
}

// Result is one generated image.
type Result struct {
	Image      *image.NRGBA
	Latent     []float32 // the final latent [1, 4, H/8, W/8], UNet scale
	Prompt     Prompt
	Seed       int64
	Sampler    Config
	Parameters string   // AUTOMATIC1111's "parameters" text
	Warnings   []string // truncated prompts
}

// Generate makes the image of prompt p: seed is used when the prompt fixes
// none. The start noise and the ancestral noise come from NewTorch(seed).
// Model calls run under NoGrad, and the engine's step arena is released
// (EndStep) after each one: call it between training steps, not inside one.
func (pl *Pipeline) Generate(p Prompt, seed int64) (res *Result, err error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.HasSeed {
		seed = p.Seed
	}
	cfg := pl.Sampler
	if p.Sampler != "" {
		if cfg, err = ByName(p.Sampler); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Source, err)
		}
	}
	f := pl.VAE.Cfg.Factor() // one latent per f×f pixels; the UNet takes any latent size
	if p.Width%f != 0 || p.Height%f != 0 {
		return nil, fmt.Errorf("%s: size %dx%d: this model needs multiples of %d pixels", p.Source, p.Width, p.Height, f)
	}
	sched := pl.Schedule
	if sched == nil {
		sched = train.SD1()
	}
	plan, err := cfg.NewPlan(p.Steps, sched)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Source, err)
	}
	res = &Result{Prompt: p, Seed: seed, Sampler: cfg}
	err = tensor.Catch(func() {
		var cond, uncond []float32
		var seqLen int
		cond, uncond, seqLen, res.Warnings = pl.encodePrompts(p)
		d := &unetDenoiser{pl: pl, cond: cond, uncond: uncond, seq: seqLen}
		shape := []int{1, pl.UNet.Cfg.InChannels, p.Height / f, p.Width / f}
		res.Latent, err = plan.Run(shape, d, NewTorch(uint64(seed)), Options{Guidance: p.Scale})
		if err != nil {
			return
		}
		for i, v := range res.Latent {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				err = fmt.Errorf("%s: the final latent has a non-finite value at %d (%g): not decoded", p.Source, i, v)
				return
			}
		}
		res.Image = pl.decode(res.Latent, shape)
	})
	if err != nil {
		return nil, err
	}
	res.Parameters = Parameters(p, cfg, seed, pl.ClipSkip, pl.ModelName)
	return res, nil
}

// encodePrompts returns the text conditioning of the prompt and of the
// negative prompt, [S, Width] each with S = 77·chunks (both padded to the
// same number of chunks), weighted as spec/sample.md §3 describes.
func (pl *Pipeline) encodePrompts(p Prompt) (cond, uncond []float32, seq int, warn []string) {
	tp, wp, tr1 := pl.tokens(p.Prompt)
	tn, wn, tr2 := pl.tokens(p.Negative)
	if tr1 {
		warn = append(warn, fmt.Sprintf("%s: prompt longer than %d tokens, truncated", p.Source, MaxChunks*tokenizer.ChunkTokens))
	}
	if tr2 {
		warn = append(warn, fmt.Sprintf("%s: negative prompt longer than %d tokens, truncated", p.Source, MaxChunks*tokenizer.ChunkTokens))
	}
	chunks := max(1, (max(len(tp), len(tn))+tokenizer.ChunkTokens-1)/tokenizer.ChunkTokens)
	seq = chunks * tokenizer.ContextLength
	idsP, wtsP := pl.frame(tp, wp, chunks)
	idsN, wtsN := pl.frame(tn, wn, chunks)
	skip := max(1, pl.ClipSkip)
	var h []float32
	pl.E.NoGrad(func() {
		h = pl.CLIP.Encode(append(idsP, idsN...), skip).Float32s() // [2·chunks, 77, W]
	})
	pl.E.EndStep()
	half := len(h) / 2
	cond, uncond = h[:half], h[half:]
	weigh(cond, wtsP)
	weigh(uncond, wtsN)
	return cond, uncond, seq, warn
}

// tokens are the BPE tokens of a prompt with their weights, truncated to
// MaxChunks chunks.
func (pl *Pipeline) tokens(text string) (ids []int32, w []float64, truncated bool) {
	for _, piece := range ParseAttention(text) {
		for _, id := range pl.Tok.Encode(piece.Text) {
			ids = append(ids, id)
			w = append(w, piece.Weight)
		}
	}
	if lim := MaxChunks * tokenizer.ChunkTokens; len(ids) > lim {
		return ids[:lim], w[:lim], true
	}
	return ids, w, false
}

// frame cuts tokens into chunks of BOS + 75 tokens (EOS-padded) + EOS and
// gives each position its weight (1 for BOS, EOS and padding).
func (pl *Pipeline) frame(ids []int32, w []float64, chunks int) ([][]int32, []float64) {
	var out [][]int32
	var wts []float64
	for c := range chunks {
		lo := min(len(ids), c*tokenizer.ChunkTokens)
		hi := min(len(ids), (c+1)*tokenizer.ChunkTokens)
		out = append(out, pl.Tok.Frame(ids[lo:hi], tokenizer.ContextLength, pl.Tok.EOS()))
		cw := make([]float64, tokenizer.ContextLength)
		for i := range cw {
			cw[i] = 1
		}
		copy(cw[1:], w[lo:hi])
		wts = append(wts, cw...)
	}
	return out, wts
}

// weigh multiplies each position of h [S, W] by its weight, then rescales
// the whole so that its mean equals the unweighted mean (kohya's
// get_weighted_text_embeddings). All-one weights leave h unchanged.
func weigh(h []float32, w []float64) {
	plain := true
	for _, v := range w {
		plain = plain && v == 1
	}
	if plain {
		return
	}
	width := len(h) / len(w)
	var before, after float64
	for i, v := range h {
		before += float64(v)
		h[i] = float32(float64(v) * w[i/width])
		after += float64(h[i])
	}
	if after == 0 {
		return
	}
	r := before / after
	for i, v := range h {
		h[i] = float32(float64(v) * r)
	}
}

// unetDenoiser runs the UNet on host latents with the prompt's
// conditioning.
type unetDenoiser struct {
	pl           *Pipeline
	cond, uncond []float32
	seq          int
}

func (d *unetDenoiser) Predict(x []float32, shape []int, t float32, branches []Branch) (out []float32, err error) {
	e := d.pl.E
	width := len(d.cond) / d.seq
	ctx := make([]float32, 0, len(branches)*len(d.cond))
	ts := make([]float32, len(branches))
	for i, b := range branches {
		if b == Uncond {
			ctx = append(ctx, d.uncond...)
		} else {
			ctx = append(ctx, d.cond...)
		}
		ts[i] = t
	}
	err = tensor.Catch(func() {
		e.NoGrad(func() {
			xt := e.FromFloat32(x, shape...)
			ct := e.FromFloat32(ctx, len(branches), d.seq, width)
			out = d.pl.UNet.Forward(xt, ts, ct).Float32s()
		})
	})
	e.EndStep()
	return out, err
}

// decode turns the final latent into 8-bit RGB: latent / scale factor →
// VAE decoder → image/2 + 0.5 clamped to [0, 1] → ×255 rounded (half to
// even, as numpy).
func (pl *Pipeline) decode(latent []float32, shape []int) *image.NRGBA {
	z := make([]float32, len(latent))
	sf := float64(pl.VAE.Cfg.ScaleFactor)
	for i, v := range latent {
		z[i] = float32(float64(v) / sf)
	}
	var px []float32
	var osh tensor.Shape
	pl.E.NoGrad(func() {
		out := pl.VAE.Decode(pl.E.FromFloat32(z, shape...))
		osh = out.Shape()
		px = out.Float32s()
	})
	pl.E.EndStep()
	h, w := osh[2], osh[3]
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	to8 := func(v float32) uint8 {
		f := min(max(float64(v)/2+0.5, 0), 1)
		return uint8(math.RoundToEven(f * 255))
	}
	for y := range h {
		for x := range w {
			i := y*w + x
			img.SetNRGBA(x, y, color.NRGBA{to8(px[i]), to8(px[plane+i]), to8(px[2*plane+i]), 255})
		}
	}
	return img
}
