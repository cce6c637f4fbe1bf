package vae_test

import (
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/nn"
	"loco/pkg/sd/sdtest"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// BenchmarkEncode512 encodes one 512×512 image with the SD 1.x VAE
// (random weights, default config); ms/op is reported, and the peak of
// live engine storage (weights included) in MB.
func BenchmarkEncode512(b *testing.B) {
	cb := newCounting(cpu.New())
	e := tensor.NewEngine(cb)
	bl := nn.NewBuilder(vae.Prefix, sdtest.RandSource{E: e, Seed: 1})
	v := vae.New(bl, vae.DefaultConfig())
	if err := bl.Err(); err != nil {
		b.Fatal(err)
	}
	img := sdtest.Randn(2, 3*512*512)
	b.ResetTimer()
	start, cpu0 := time.Now(), sdtest.CPUTime()
	for i := 0; i < b.N; i++ {
		x := e.FromFloat32(img, 1, 3, 512, 512)
		e.NoGrad(func() {
			mean, _ := v.Encode(x)
			_ = mean.Float32s()
		})
		e.EndStep()
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64(sdtest.CPUTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
	b.ReportMetric(1.12e12*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s") // 1.12 TFLOP per encode
	b.ReportMetric(float64(cb.peak)/1e6, "peak-MB")
}

// BenchmarkDecode64 decodes one 64×64 latent (a 512×512 image).
func BenchmarkDecode64(b *testing.B) {
	e := tensor.NewEngine(cpu.New())
	bl := nn.NewBuilder(vae.Prefix, sdtest.RandSource{E: e, Seed: 1})
	v := vae.New(bl, vae.DefaultConfig())
	z := sdtest.Randn(3, 4*64*64)
	b.ResetTimer()
	start, cpu0 := time.Now(), sdtest.CPUTime()
	for i := 0; i < b.N; i++ {
		x := e.FromFloat32(z, 1, 4, 64, 64)
		e.NoGrad(func() { _ = v.Decode(x).Float32s() })
		e.EndStep()
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64(sdtest.CPUTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
}
