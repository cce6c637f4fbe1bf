package sample

import "math"

// RNG fills slices with standard-normal draws. A sampler draws x_T first
// (one call for the whole latent), then, for Euler a, one call per step.
type RNG interface {
	Normal(dst []float32)
}

// Torch is PyTorch's CPU generator: torch.manual_seed(seed) followed by
// torch.randn(n) for each Normal call of n values. It is mt19937 seeded with
// the low 32 bits of the seed; draws of 16 or more values fill the slice
// with 24-bit uniforms and turn them into normals by Box-Muller in blocks of
// 16 (the last block re-drawn when n is not a multiple of 16); shorter draws
// use 53-bit uniforms and Box-Muller in float64, keeping the second value
// for the next draw, as torch's normal_distribution<double> does.
//
// The values match torch's up to the last bit of float32 log/sin/cos
// (torch's AVX2 path uses its own approximations of those functions): at
// most 1 ulp apart in the reference draws tested. kohya draws sample noise on the GPU (CUDA's Philox), which
// this generator does not reproduce; it gives loco seeded, portable noise
// with torch's CPU stream.
type Torch struct {
	mt         mt19937
	nextNormal float64
	hasNext    bool
}

// NewTorch returns the generator after torch.manual_seed(seed).
func NewTorch(seed uint64) *Torch {
	g := &Torch{}
	g.mt.seed(uint32(seed))
	return g
}

// Uint32 is the next raw 32-bit output (torch's generator.random()).
func (g *Torch) Uint32() uint32 { return g.mt.next() }

// Uint64 is torch's random64(): two outputs, the first in the high half.
func (g *Torch) Uint64() uint64 {
	hi := uint64(g.mt.next())
	lo := uint64(g.mt.next())
	return hi<<32 | lo
}

// Float32 is a uniform draw in [0, 1) with 24 random bits (torch.rand).
func (g *Torch) Float32() float32 {
	return float32(g.mt.next()&(1<<24-1)) * (1.0 / (1 << 24))
}

// Float64 is a uniform draw in [0, 1) with 53 random bits.
func (g *Torch) Float64() float64 {
	return float64(g.Uint64()&(1<<53-1)) * (1.0 / (1 << 53))
}

// Normal implements RNG as torch.randn(len(dst)).
func (g *Torch) Normal(dst []float32) {
	n := len(dst)
	if n >= 16 {
		for i := range dst {
			dst[i] = g.Float32()
		}
		for i := 0; i+16 <= n; i += 16 {
			boxMuller16(dst[i : i+16])
		}
		if n%16 != 0 {
			tail := dst[n-16:]
			for i := range tail {
				tail[i] = g.Float32()
			}
			boxMuller16(tail)
		}
		return
	}
	for i := range dst {
		if g.hasNext {
			g.hasNext = false
			dst[i] = float32(g.nextNormal)
			continue
		}
		u1 := g.Float64()
		u2 := g.Float64()
		r := math.Sqrt(-2 * math.Log1p(-u2))
		theta := 2 * math.Pi * u1
		g.nextNormal, g.hasNext = r*math.Sin(theta), true
		dst[i] = float32(r * math.Cos(theta))
	}
}

// boxMuller16 turns 16 uniforms into 16 normals in place: pairs (j, j+8),
// radius from 1 − u[j], angle from u[j+8], rounded to float32 at each
// operation as torch's vectorised float code computes them (2π as a
// float32 constant, θ = 2π·u in float32).
func boxMuller16(u []float32) {
	const twoPi32 = float32(2 * math.Pi)
	for j := range 8 {
		u1 := 1 - u[j]
		u2 := u[j+8]
		radius := float32(math.Sqrt(float64(float32(-2 * float32(math.Log(float64(u1)))))))
		theta := twoPi32 * u2
		u[j] = radius * float32(math.Cos(float64(theta)))
		u[j+8] = radius * float32(math.Sin(float64(theta)))
	}
}

// mt19937 is the 32-bit Mersenne Twister with torch's seeding.
type mt19937 struct {
	state [624]uint32
	left  int
	next_ int
}

func (m *mt19937) seed(s uint32) {
	m.state[0] = s
	for j := 1; j < 624; j++ {
		p := m.state[j-1]
		m.state[j] = 1812433253*(p^(p>>30)) + uint32(j)
	}
	m.left, m.next_ = 1, 0
}

func (m *mt19937) twist() {
	const n, k = 624, 397
	mix := func(a, b uint32) uint32 {
		y := a&0x80000000 | b&0x7fffffff
		v := y >> 1
		if y&1 != 0 {
			v ^= 0x9908b0df
		}
		return v
	}
	for j := 0; j < n; j++ {
		m.state[j] = m.state[(j+k)%n] ^ mix(m.state[j], m.state[(j+1)%n])
	}
	m.left, m.next_ = n, 0
}

func (m *mt19937) next() uint32 {
	m.left--
	if m.left <= 0 {
		m.twist()
	}
	y := m.state[m.next_]
	m.next_++
	y ^= y >> 11
	y ^= y << 7 & 0x9d2c5680
	y ^= y << 15 & 0xefc60000
	y ^= y >> 18
	return y
}
