package latentcache

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkGet512 reads 512×512 entries (4×64×64 latents, with flip) by
// key from a cache of 64 entries and reports latents/s and the bytes on
// disk per entry, against kohya's fp32 .npz: 65,536 bytes per latent plus
// the npz overhead, 131,072 with flip (spec/latents.md §1). The latents
// are smooth random fields (VAE means are spatially correlated; white
// noise would be the incompressible worst case).
func BenchmarkGet512(b *testing.B) {
	dir := b.TempDir()
	c, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var keys []string
	const n = 64
	for i := 0; i < n; i++ {
		e := &Entry{Key: Key(KeyInput{Crop: [4]int{i}}), Shape: [3]int{4, 64, 64}, Bucket: [2]int{512, 512}}
		for _, flip := range []bool{false, true} {
			m, l := smooth(r, 4, 64), smooth(r, 4, 64)
			for j := range l {
				l[j] = l[j] - 8
			}
			if err := e.SetLatent(flip, m, l); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Put(e, "v"); err != nil {
			b.Fatal(err)
		}
		keys = append(keys, e.Key)
	}
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
	st := c.Stats()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, err := c.Get(keys[i%n])
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := e.Latent(false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "latents/s")
	b.ReportMetric(float64(st.ShardBytes)/n, "bytes/entry")
	b.ReportMetric(float64(st.ShardBytes)/n/131072, "vs-kohya-npz-flip")
}

// smooth is a c×s×s field: a random walk along rows plus a per-channel
// offset, scaled like a VAE mean (|μ| up to ~10).
func smooth(r *rand.Rand, c, s int) []float32 {
	v := make([]float32, c*s*s)
	for ch := 0; ch < c; ch++ {
		off := r.NormFloat64() * 3
		for y := 0; y < s; y++ {
			x := off
			for i := 0; i < s; i++ {
				x += r.NormFloat64() * 0.3
				v[ch*s*s+y*s+i] = float32(x)
			}
		}
	}
	return v
}
