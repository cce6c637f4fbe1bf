// Package encodetest holds test support shared by the latent encoder and
// loco-encode: the smallest SD-shaped VAE, a writer of random VAE
// checkpoints with deliberate faults, and the fp16 comparison of cached
// latents with a direct encode.
package encodetest

import (
	"math"
	"testing"

	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/vae"
)

// TinyVAE is the smallest SD-shaped VAE: 32 channels (GroupNorm's 32
// groups), four levels (factor 8), one block per level.
func TinyVAE() vae.Config {
	c := vae.DefaultConfig()
	c.Ch, c.ChMult, c.NumResBlocks = 32, []int{1, 1, 1, 1}, 1
	return c
}

// Faults are deliberate defects of a written VAE checkpoint.
type Faults struct {
	Drop    string               // a key to leave out
	Reshape string               // a key written with its first dimension one larger
	Extra   []safetensors.Tensor // tensors written before the VAE's (e.g. a UNet key)
}

// WriteVAE writes a VAE-only checkpoint (fp16) of cfg with seeded random
// weights for every key, changed by f.
func WriteVAE(path string, cfg vae.Config, seed uint64, f Faults) error {
	b := nn.NewBuilder(vae.Prefix, nil)
	vae.New(b, cfg)
	ts := append([]safetensors.Tensor(nil), f.Extra...)
	for _, p := range b.Params() {
		if p.Key == f.Drop {
			continue
		}
		shape := []int(p.Shape)
		if p.Key == f.Reshape {
			shape = append([]int{shape[0] + 1}, shape[1:]...)
		}
		t, err := safetensors.FromFloat32(p.Key, safetensors.F16, shape, sd.RandomValues(seed, p.Key, shape))
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	return safetensors.WriteFile(path, ts, nil)
}

// CloseF16 fails unless got is want rounded to fp16: each value within
// 2^-10 relative (half an ulp is 2^-11; the rest allows for the direct
// encode's own float32 rounding), or within 1e-4 of the largest magnitude
// for values near zero. An all-zero want fails: it would prove nothing.
func CloseF16(t testing.TB, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale := 0.0
	for _, w := range want {
		scale = max(scale, math.Abs(float64(w)))
	}
	if scale == 0 {
		t.Fatalf("%s: the reference is all zero", what)
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > math.Abs(float64(want[i]))/1024+1e-4*scale {
			t.Fatalf("%s[%d] = %g, want %g (difference %g beyond fp16 rounding)", what, i, got[i], want[i], d)
		}
	}
}
