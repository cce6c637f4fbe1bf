package train

import (
	"math"
	"math/rand/v2"
)

// LatentScale is SD 1.x's latent scaling factor: x₀ = latent × 0.18215.
const LatentScale = 0.18215

// SampleLatent draws one sample of the VAE posterior N(mean, exp(logvar))
// into dst and scales it by LatentScale: x₀ = (mean + exp(½·logvar)·ε)·0.18215
// with ε ~ N(0, I) from r. logvar is clamped to [−30, 20] as diffusers'
// DiagonalGaussianDistribution does. NaNs become 0 (spec/train.md §2.1).
func SampleLatent(dst, mean, logvar []float32, r *rand.Rand) {
	for i := range dst {
		lv := math.Min(20, math.Max(-30, float64(logvar[i])))
		x := (float64(mean[i]) + math.Exp(0.5*lv)*r.NormFloat64()) * LatentScale
		if math.IsNaN(x) {
			x = 0
		}
		dst[i] = float32(x)
	}
}

// Timesteps draws n integer timesteps uniformly from [min, max); if min ≥
// max every timestep is max (spec/train.md §3).
func Timesteps(r *rand.Rand, n, lo, hi int) []int {
	t := make([]int, n)
	for i := range t {
		if lo >= hi {
			t[i] = hi
		} else {
			t[i] = lo + r.IntN(hi-lo)
		}
	}
	return t
}

// NoiseOffset holds the offset-noise settings (spec/train.md §4).
type NoiseOffset struct {
	Offset         float64 // noise_offset; 0 = off
	RandomStrength bool    // noise_offset_random_strength: s = U(0,1)·Offset, one draw per batch
	Adaptive       float64 // adaptive_noise_scale: s = max(0, Offset + a·|mean_hw x₀|) per (b, c)
}

// ApplyOffset adds s·n to noise [B, C, H·W], n ~ N(0,1) of shape (B, C, 1, 1).
// x0 (same shape) is read only with Adaptive.
func (o NoiseOffset) ApplyOffset(r *rand.Rand, noise, x0 []float32, b, c, hw int) {
	if o.Offset == 0 {
		return
	}
	s := o.Offset
	if o.RandomStrength {
		s *= r.Float64()
	}
	for i := 0; i < b*c; i++ {
		si := s
		if o.Adaptive != 0 {
			var m float64
			for _, v := range x0[i*hw : (i+1)*hw] {
				m += float64(v)
			}
			si = math.Max(0, s+o.Adaptive*math.Abs(m/float64(hw)))
		}
		n := float32(si * r.NormFloat64())
		for j := i * hw; j < (i+1)*hw; j++ {
			noise[j] += n
		}
	}
}

// PyramidNoise applies kohya's multi-resolution noise to noise [B, C, H, W]
// in place (spec/train.md §5): for i < iterations, with r = U[2, 4) drawn
// once per level, a fresh N(0,1) map of size max(1, ⌊H/rⁱ⌋)×max(1, ⌊W/rⁱ⌋)
// is upsampled bilinearly (half-pixel centres) and added with weight
// discountⁱ, stopping after a level of height or width 1; finally the whole
// tensor is divided by its standard deviation (unbiased, over all elements).
func PyramidNoise(r *rand.Rand, noise []float32, b, c, h, w, iterations int, discount float64) {
	if iterations <= 0 {
		return
	}
	nc := b * c
	up := make([]float32, len(noise))
	for i := 0; i < iterations; i++ {
		rr := r.Float64()*2 + 2
		p := math.Pow(rr, float64(i))
		hn, wn := max(1, int(float64(h)/p)), max(1, int(float64(w)/p))
		small := make([]float32, nc*hn*wn)
		normals(r, small)
		ResizeBilinear(up, small, nc, hn, wn, h, w)
		d := float32(math.Pow(discount, float64(i)))
		for j := range noise {
			noise[j] += up[j] * d
		}
		if hn == 1 || wn == 1 {
			break
		}
	}
	var sum, sq float64
	for _, v := range noise {
		sum += float64(v)
	}
	mean := sum / float64(len(noise))
	for _, v := range noise {
		d := float64(v) - mean
		sq += d * d
	}
	std := math.Sqrt(sq / float64(len(noise)-1))
	if std == 0 || math.IsNaN(std) {
		return
	}
	inv := 1 / std
	for j := range noise {
		noise[j] = float32(float64(noise[j]) * inv)
	}
}

// ResizeBilinear resizes x [NC, H, W] to y [NC, OH, OW] like PyTorch's
// F.interpolate(mode="bilinear", align_corners=False): source coordinate
// (o + ½)·in/out − ½, clamped at 0, neighbours clamped at the edge.
func ResizeBilinear(y, x []float32, nc, h, w, oh, ow int) {
	type tap struct {
		i0, i1 int
		l1     float32
	}
	taps := func(in, out int) []tap {
		t := make([]tap, out)
		scale := float64(in) / float64(out)
		for o := range t {
			src := math.Max(0, (float64(o)+0.5)*scale-0.5)
			i0 := min(int(src), in-1)
			i1 := min(i0+1, in-1)
			t[o] = tap{i0, i1, float32(src - float64(i0))}
		}
		return t
	}
	ty, tx := taps(h, oh), taps(w, ow)
	for n := 0; n < nc; n++ {
		src := x[n*h*w : (n+1)*h*w]
		dst := y[n*oh*ow : (n+1)*oh*ow]
		for oy, a := range ty {
			r0, r1 := src[a.i0*w:(a.i0+1)*w], src[a.i1*w:(a.i1+1)*w]
			for ox, bb := range tx {
				top := r0[bb.i0]*(1-bb.l1) + r0[bb.i1]*bb.l1
				bot := r1[bb.i0]*(1-bb.l1) + r1[bb.i1]*bb.l1
				dst[oy*ow+ox] = top*(1-a.l1) + bot*a.l1
			}
		}
	}
}

// SNR is ᾱ_t/(1−ᾱ_t) from kohya's float32 ᾱ.
func (s *Schedule) SNR(t int) float64 {
	a := float64(s.AlphasCumprod32[t])
	return a / (1 - a)
}

// MinSNRWeight is the min-SNR-γ loss weight for ε-prediction,
// min(SNR(t), γ)/SNR(t); 1 when gamma is 0 (off).
func (s *Schedule) MinSNRWeight(t int, gamma float64) float64 {
	if gamma <= 0 {
		return 1
	}
	snr := s.SNR(t)
	return math.Min(snr, gamma) / snr
}
