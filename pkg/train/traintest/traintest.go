// Package traintest makes the tiny models and data that the training tests
// use: an SD-shaped single-file checkpoint with random weights (UNet at the
// golden unet_tiny size, a 2-layer text encoder of width 32, a 32-channel
// VAE) and an in-memory latent source.
package traintest

import (
	"fmt"
	"math/rand/v2"

	"loco/pkg/latentcache"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
)

// UNet is the golden unet_tiny configuration (model_channels 32, context 32).
func UNet() unet.Config {
	c := unet.DefaultConfig()
	c.ModelChannels, c.ContextDim = 32, 32
	return c
}

// CLIP is a 2-layer text encoder of width 32 (one head: width/64 rounds to 1).
func CLIP() clip.Config {
	return clip.Config{VocabSize: 49408, ContextLength: 77, Width: 32, Layers: 2, Heads: 1, MLP: 128, Eps: 1e-5}
}

// VAE is the smallest SD-shaped VAE (factor 8).
func VAE() vae.Config {
	c := vae.DefaultConfig()
	c.Ch, c.ChMult, c.NumResBlocks = 32, []int{1, 1, 1, 1}, 1
	return c
}

// WriteCheckpoint writes a single-file SD 1.x checkpoint with the tiny
// configurations and random weights drawn from seed, in dtype dt.
func WriteCheckpoint(path string, seed uint64, dt safetensors.DType) error {
	var ts []safetensors.Tensor
	add := func(b *nn.Builder) error {
		for _, p := range b.Params() {
			t, err := safetensors.FromFloat32(p.Key, dt, []int(p.Shape), sd.RandomValues(seed, p.Key, p.Shape))
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
		return nil
	}
	ub := nn.NewBuilder(sd.UNetPrefix, nil)
	if _, err := unet.New(ub, UNet()); err != nil {
		return err
	}
	tb := nn.NewBuilder(sd.TEPrefix, nil)
	clip.New(tb, CLIP())
	vb := nn.NewBuilder(vae.Prefix, nil)
	vae.New(vb, VAE())
	for _, b := range []*nn.Builder{ub, tb, vb} {
		if err := add(b); err != nil {
			return err
		}
	}
	return safetensors.WriteFile(path, ts, nil)
}

// Latents is an in-memory LatentSource.
type Latents map[string]*latentcache.Entry

// Get implements train.LatentSource.
func (l Latents) Get(key string) (*latentcache.Entry, error) {
	e, ok := l[key]
	if !ok {
		return nil, fmt.Errorf("latent %s: %w", key, latentcache.ErrNotFound)
	}
	return e, nil
}

// Add makes a random latent distribution for key with the given latent
// size (h, w): mean ~ N(0, 4) (a VAE latent's typical scale), logvar
// around −6; a nonzero fill replaces every mean value.
func (l Latents) Add(key string, h, w int, seed uint64, fill float32) {
	r := rand.New(rand.NewPCG(seed, 7))
	n := 4 * h * w
	mean, logvar := make([]float32, n), make([]float32, n)
	for i := range mean {
		mean[i] = float32(2 * r.NormFloat64())
		if fill != 0 {
			mean[i] = fill
		}
		logvar[i] = float32(-6 + 0.5*r.NormFloat64())
	}
	e := &latentcache.Entry{Key: key, Shape: [3]int{4, h, w}, Bucket: [2]int{w * 8, h * 8}}
	if err := e.SetLatent(false, mean, logvar); err != nil {
		panic(err)
	}
	l[key] = e
}
