package sample

import (
	"bytes"
	"image/png"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
	"loco/pkg/tokenizer"
)

// tinyPipeline builds a tiny SD 1.x model with random weights (the golden
// cases' sizes: UNet model_channels 32, context 32; CLIP width 32; VAE
// ch 32) and the real CLIP vocabulary; it skips without the vocabulary.
func tinyPipeline(tb testing.TB, seed uint64) *Pipeline {
	tb.Helper()
	vocab, ok := golden.Shared("clip/bpe_simple_vocab_16e6.txt.gz")
	if !ok {
		tb.Skip("CLIP vocabulary ../shared/clip/bpe_simple_vocab_16e6.txt.gz not found")
	}
	tok, err := tokenizer.Load(vocab)
	if err != nil {
		tb.Fatal(err)
	}
	e := tensor.NewEngine(cpu.New())
	src := &sd.RandomSource{E: e, DType: tensor.F32, Seed: seed}
	ucfg := unet.DefaultConfig()
	ucfg.ModelChannels, ucfg.ContextDim = 32, 32
	u, err := unet.New(nn.NewBuilder("model.diffusion_model.", src), ucfg)
	if err != nil {
		tb.Fatal(err)
	}
	cb := nn.NewBuilder(clip.Prefix, src)
	cm := clip.New(cb, clip.Config{VocabSize: 49408, ContextLength: 77, Width: 32, Layers: 2, Heads: 4})
	vcfg := vae.DefaultConfig()
	vcfg.Ch = 32
	vb := nn.NewBuilder(vae.Prefix, src)
	v := vae.New(vb, vcfg)
	for _, err := range []error{cb.Err(), vb.Err()} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return &Pipeline{E: e, UNet: u, CLIP: cm, VAE: v, Tok: tok, Sampler: EulerAncestralKohya(), ModelName: "tiny"}
}

func encode(t *testing.T, r *Result) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := EncodePNG(&b, r.Image, r.Parameters); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestGenerateReproducible: a seeded sample of the tiny model is the same
// PNG byte for byte, also from a freshly built pipeline; another seed
// gives another image; the PNG carries A1111's parameters.
func TestGenerateReproducible(t *testing.T) {
	pl := tinyPipeline(t, 1)
	p, err := ParseLine("(pralyco:1.3), photo of a [woman] --n blurry, lowres --w 64 --h 128 --s 4 --l 7.5 --d 42", "test:1")
	if err != nil {
		t.Fatal(err)
	}
	r1, err := pl.Generate(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	b1 := encode(t, r1)
	if r1.Image.Rect.Dx() != 64 || r1.Image.Rect.Dy() != 128 {
		t.Fatalf("image %v, want 64x128", r1.Image.Rect)
	}
	levels := map[uint8]bool{}
	for _, v := range r1.Image.Pix {
		levels[v] = true
	}
	if len(levels) < 10 {
		t.Fatalf("image has only %d distinct byte values", len(levels))
	}
	r2, err := tinyPipeline(t, 1).Generate(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, encode(t, r2)) {
		t.Fatal("the same seed gave different PNG bytes")
	}
	p.Seed = 43
	r3, err := pl.Generate(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(r1.Image.Pix, r3.Image.Pix) {
		t.Fatal("seeds 42 and 43 gave the same image")
	}
	want := "(pralyco:1.3), photo of a [woman]\nNegative prompt: blurry, lowres\n" +
		"Steps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 64x128, Model: tiny"
	got, ok, err := ReadParameters(b1)
	if err != nil || !ok || got != want {
		t.Fatalf("parameters %q (found %v, %v), want %q", got, ok, err, want)
	}
	img, err := png.Decode(bytes.NewReader(b1))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds() != r1.Image.Rect {
		t.Fatalf("decoded bounds %v", img.Bounds())
	}
	t.Logf("PNG %d bytes, %d distinct byte values", len(b1), len(levels))
}

// TestGenerateOptions: the prompt's sampler, no guidance at scale 1, the
// fallback seed, and sizes the model cannot make.
func TestGenerateOptions(t *testing.T) {
	pl := tinyPipeline(t, 2)
	p, err := ParseLine("a cat --ss ddim --s 3 --l 1 --w 64 --h 64", "test:2")
	if err != nil {
		t.Fatal(err)
	}
	r, err := pl.Generate(p, 7)
	if err != nil {
		t.Fatal(err)
	}
	if r.Seed != 7 || r.Sampler.Method != DDIM || !strings.Contains(r.Parameters, "Sampler: DDIM, CFG scale: 1.0, Seed: 7") {
		t.Fatalf("seed %d, sampler %v, parameters %q", r.Seed, r.Sampler.Method, r.Parameters)
	}
	for _, v := range r.Latent { // kohya's DDIM ends on the clamped x̂₀
		if v < -1 || v > 1 {
			t.Fatalf("kohya DDIM latent value %g outside [-1, 1]", v)
		}
	}
	// Multiples of 8 px that are not of 64 (latents 9×13 here): kohya
	// samples them, the UNet meets odd skip sizes as diffusers' does.
	p.Width, p.Height = 72, 104
	r, err = pl.Generate(p, 7)
	if err != nil {
		t.Fatalf("72×104 px: %v", err)
	}
	if r.Image.Rect.Dx() != 72 || r.Image.Rect.Dy() != 104 {
		t.Fatalf("72×104 px: image %v", r.Image.Rect)
	}
	p.Width = 60
	if _, err := pl.Generate(p, 7); err == nil || !strings.Contains(err.Error(), "multiple of 8") {
		t.Fatalf("60 px wide: err %v", err)
	}
}

// TestGenerateLongPrompt: a prompt over 75 tokens uses two chunks for
// both branches; over 225 tokens is truncated with a warning.
func TestGenerateLongPrompt(t *testing.T) {
	pl := tinyPipeline(t, 3)
	long := strings.Repeat("red ", 80)
	p := NewPrompt(long)
	p.Width, p.Height, p.Steps, p.Source = 64, 64, 2, "long"
	cond, uncond, seq, warn := pl.encodePrompts(p)
	if seq != 154 || len(cond) != 154*32 || len(uncond) != len(cond) || len(warn) != 0 {
		t.Fatalf("seq %d, %d/%d values, warnings %v", seq, len(cond), len(uncond), warn)
	}
	p.Prompt = strings.Repeat("red ", 300)
	_, _, seq, warn = pl.encodePrompts(p)
	if seq != 3*77 || len(warn) != 1 {
		t.Fatalf("seq %d, warnings %v", seq, warn)
	}
	if _, err := pl.Generate(p, 1); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSampleTiny: Euler a steps with CFG on the tiny model at
// 64×64 px (latent 8×8, UNet batch 2).
func BenchmarkSampleTiny(b *testing.B) {
	pl := tinyPipeline(b, 1)
	p := NewPrompt("pralyco, photo of a woman")
	p.Width, p.Height, p.Steps = 64, 64, 10
	for b.Loop() {
		if _, err := pl.Generate(p, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*p.Steps)/b.Elapsed().Seconds(), "steps/s")
}
