package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
	"loco/pkg/tokenizer"
)

// TestTinyCheckpoint writes the tiny checkpoint and vocabulary, loads them
// with the real loaders (OpenCheckpoint, the three model packages, the
// tokenizer) and checks that every tensor is consumed or on the ignore
// list, that the vocabulary matches the text encoder and covers the demo
// prompts, and that a forward pass gives finite, non-constant numbers.
func TestTinyCheckpoint(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "tiny.safetensors")
	paths, err := generate(options{size: "tiny", dtype: "fp16", out: out, seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	vp := filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz")
	if len(paths) != 2 || paths[0] != vp || paths[1] != out {
		t.Fatalf("wrote %v", paths)
	}

	tok, err := tokenizer.Load(vp)
	if err != nil {
		t.Fatal(err)
	}
	merges := learnMerges(maxTinyMerges)
	if len(merges) < 200 {
		t.Errorf("only %d merges, want a few hundred", len(merges))
	}
	if tok.VocabSize() != vocabSize(merges) {
		t.Errorf("tokenizer vocabulary %d, want %d", tok.VocabSize(), vocabSize(merges))
	}
	// The demo prompts' words are whole tokens.
	for _, p := range demoPrompts {
		ids := tok.Encode(p)
		if want := len(preTokens(p)); len(ids) != want {
			t.Errorf("%q: %d tokens (%s), want one per word (%d)", p, len(ids), tok.Decode(ids), want)
		}
		if got := tok.Decode(ids); got != tok.Decode(tok.Encode(got)) {
			t.Errorf("%q does not round-trip: %q", p, got)
		}
	}

	ck, err := sd.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	cfg, err := sizeConfigs("tiny", tok.VocabSize())
	if err != nil {
		t.Fatal(err)
	}
	e := tensor.NewEngine(cpu.New())
	src := ck.Source(e, tensor.F32)
	u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, src), cfg.UNet)
	if err != nil {
		t.Fatal(err)
	}
	vb := nn.NewBuilder(sd.VAEPrefix, src)
	v := vae.New(vb, cfg.VAE)
	cb := nn.NewBuilder(sd.TEPrefix, src)
	m := clip.New(cb, cfg.CLIP)
	for _, b := range []*nn.Builder{vb, cb} {
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if un := src.Unexpected(""); len(un) > 0 {
		t.Fatalf("unexpected tensors: %v", un)
	}
	if un := src.Unused(""); len(un) != 13 { // 12 schedule buffers and position_ids
		t.Errorf("%d unused (ignored) tensors, want 13: %v", len(un), un)
	}
	for k, want := range map[string]string{"loco.size": "tiny", "loco.seed": "7"} {
		if got := ck.F.Metadata()[k]; got != want {
			t.Errorf("metadata %s = %q, want %q", k, got, want)
		}
	}
	acp, err := ck.F.ReadFloat32("alphas_cumprod")
	if err != nil {
		t.Fatal(err)
	}
	// SD 1.x: alphas_cumprod[0] = 1-0.00085, [999] = 0.0046601.
	if math.Abs(float64(acp[0])-0.99915) > 1e-3 || math.Abs(float64(acp[999])/0.0046601-1) > 1e-2 { // fp16
		t.Errorf("alphas_cumprod[0], [999] = %g, %g", acp[0], acp[999])
	}

	ids := tok.SD1("pralyco, photo of a woman")
	e.NoGrad(func() {
		ctx := m.Encode([][]int32{ids}, 1)
		x := e.FromFloat32(ramp(4*8*8), 1, 4, 8, 8)
		eps := u.Forward(x, []float32{500}, ctx).Float32s()
		checkFinite(t, "unet", eps)
		mean, _ := v.Encode(e.FromFloat32(ramp(3*32*32), 1, 3, 32, 32))
		checkFinite(t, "vae mean", mean.Float32s())
		checkFinite(t, "vae decode", v.Decode(mean).Float32s())
	})
}

func ramp(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i) * 0.37))
	}
	return v
}

func checkFinite(t *testing.T, what string, v []float32) {
	t.Helper()
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("%s: element %d is %v", what, i, x)
		}
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	if lo == hi {
		t.Errorf("%s: constant output %v", what, lo)
	}
}

// The same flags give the same bytes.
func TestTinyDeterministic(t *testing.T) {
	dir := t.TempDir()
	var files [2][]byte
	var vocabs [2][]byte
	for i := range files {
		out := filepath.Join(dir, "m"+string(rune('a'+i))+".safetensors")
		vp := filepath.Join(dir, "v"+string(rune('a'+i))+".gz")
		if _, err := generate(options{size: "tiny", dtype: "fp32", out: out, vocab: vp, seed: 3}); err != nil {
			t.Fatal(err)
		}
		var err error
		if files[i], err = os.ReadFile(out); err != nil {
			t.Fatal(err)
		}
		if vocabs[i], err = os.ReadFile(vp); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(files[0], files[1]) || !bytes.Equal(vocabs[0], vocabs[1]) {
		t.Error("two runs with the same flags differ")
	}
	if _, err := generate(options{size: "huge", dtype: "fp16", out: filepath.Join(dir, "x.safetensors")}); err == nil {
		t.Error("-size huge accepted")
	}
	if _, err := generate(options{size: "tiny", dtype: "int8", out: filepath.Join(dir, "x.safetensors")}); err == nil {
		t.Error("-dtype int8 accepted")
	}
}

// The SD 1.5 key list has the real parameter count (the file itself is
// written by the benchmark in pkg/sd, not here: 2 GB).
func TestSD15Params(t *testing.T) {
	cfg, err := sizeConfigs("sd15", 0)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := cfg.params()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range ps {
		n += p.Shape.Numel()
	}
	// UNet 859,520,964 + VAE 83,653,863 + CLIP 123,060,480.
	if len(ps) != 686+248+196 || n != 859520964+83653863+123060480 {
		t.Errorf("%d keys, %d parameters", len(ps), n)
	}
}
