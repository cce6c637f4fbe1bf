package merge

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"loco/pkg/lycoris"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// randomSD15 streams a random real-size SD 1.5 checkpoint (UNet, text
// encoder, VAE; fp16) to path, one tensor at a time.
func randomSD15(b *testing.B, path string) {
	b.Helper()
	var specs []safetensors.Spec
	add := func(bl *nn.Builder) {
		for _, p := range bl.Params() {
			specs = append(specs, safetensors.Spec{Name: p.Key, DType: safetensors.F16, Shape: p.Shape})
		}
	}
	ub := nn.NewBuilder(sd.UNetPrefix, nil)
	if _, err := unet.New(ub, unet.DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	add(ub)
	cb := nn.NewBuilder(clip.Prefix, nil)
	clip.New(cb, clip.DefaultConfig())
	add(cb)
	vb := nn.NewBuilder(sd.VAEPrefix, nil)
	vae.New(vb, vae.DefaultConfig())
	add(vb)
	w, err := safetensors.Create(path, specs, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range specs {
		if err := w.WriteFloat32(s.Name, sd.RandomValues(1, s.Name, tensor.Shape(s.Shape))); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// randomSD15Network writes a random dim-8/alpha-4, conv-4/4 LoCon on all
// 354 SD 1.5 layers (fp16).
func randomSD15Network(b *testing.B, path string) {
	rng := rand.New(rand.NewPCG(8, 8))
	tab := SD15Table()
	var mods []*lycoris.FileModule
	for _, n := range tab.Names() {
		l := tab.Layers[n]
		r := 8
		if l.Conv && l.Kernel > 1 {
			r = 4
		}
		mods = append(mods, randomModule(rng, l, r, 4, false))
	}
	ts, err := moduleTensors(mods, safetensors.F16)
	if err != nil {
		b.Fatal(err)
	}
	if err := safetensors.WriteFile(path, ts, map[string]string{"ss_network_dim": "8", "ss_network_alpha": "4.0"}); err != nil {
		b.Fatal(err)
	}
}

func maxRSS() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024 // KiB on Linux → MiB
}

// BenchmarkApplySD15 merges a dim-8 LoCon into a random real-size SD 1.5
// checkpoint (fp16, ≈2.1 GB) and reports seconds and the process's peak
// RSS (which includes writing the random inputs, one tensor at a time).
func BenchmarkApplySD15(b *testing.B) {
	dir := b.TempDir()
	base, net := filepath.Join(dir, "sd15.safetensors"), filepath.Join(dir, "net.safetensors")
	randomSD15(b, base)
	randomSD15Network(b, net)
	st, _ := os.Stat(base)
	b.SetBytes(st.Size())
	out := filepath.Join(dir, "merged.safetensors")
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := Apply(ApplyOptions{Base: base, Output: out, Networks: []Input{{Path: net, TE: 1, UNet: 0.8}}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/apply")
	b.ReportMetric(maxRSS(), "peakRSS-MiB")
	b.ReportMetric(float64(st.Size())/(1<<20), "ckpt-MiB")
}

// BenchmarkResizeSD15 resizes a real-size dim-8/conv-4 LoCon to rank 4.
func BenchmarkResizeSD15(b *testing.B) {
	dir := b.TempDir()
	net := filepath.Join(dir, "net.safetensors")
	randomSD15Network(b, net)
	out := filepath.Join(dir, "r4.safetensors")
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := Resize(net, out, ResizeOptions{Rank: 4}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/resize")
}

// BenchmarkResizeSD15Dynamic is the same with sv_fro 0.9.
func BenchmarkResizeSD15Dynamic(b *testing.B) {
	dir := b.TempDir()
	net := filepath.Join(dir, "net.safetensors")
	randomSD15Network(b, net)
	out := filepath.Join(dir, "fro.safetensors")
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := Resize(net, out, ResizeOptions{Rank: 8, Method: SVFro, Param: 0.9}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/resize")
}
