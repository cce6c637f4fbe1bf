package vae_test

import (
	"fmt"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd/sdtest"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// An image is encoded to its latent distribution and a latent decoded back
// (random weights here; sd.FileSource reads a checkpoint).
func ExampleVAE_Encode() {
	e := tensor.NewEngine(cpu.New())
	cfg := vae.DefaultConfig()
	cfg.Ch = 32 // a small model; DefaultConfig is SD 1.x's
	b := nn.NewBuilder(vae.Prefix, sdtest.RandSource{E: e, Seed: 1})
	v := vae.New(b, cfg)
	if err := b.Err(); err != nil {
		panic(err)
	}
	img := e.FromFloat32(sdtest.Randn(1, 3*64*48), 1, 3, 64, 48) // RGB in [-1, 1]
	e.NoGrad(func() {
		mean, logvar := v.Encode(img)
		fmt.Println(mean.Shape(), logvar.Shape())
		// The UNet sees ScaleFactor·latent; the decoder takes it back divided.
		z := tensor.Scale(mean, v.Cfg.ScaleFactor)
		out := v.Decode(tensor.Scale(z, 1/v.Cfg.ScaleFactor))
		fmt.Println(out.Shape())
	})
	e.EndStep()
	// Output:
	// [1,4,8,6] [1,4,8,6]
	// [1,3,64,48]
}
