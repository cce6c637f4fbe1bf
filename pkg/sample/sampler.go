package sample

import (
	"fmt"
	"math"
)

// Branch says which conditioning a latent of a denoiser batch gets.
type Branch uint8

const (
	Uncond Branch = iota // the negative prompt (or the empty prompt)
	Cond                 // the prompt
)

// Denoiser is the model seen by a sampler: it predicts ε (or v, with
// Config.VPrediction) for a batch of latents. x holds len(branches) latents
// of shape [C, H, W] back to back (shape is the batch shape [B, C, H, W],
// B = len(branches)); latent i is conditioned on branches[i]; t is the
// timestep handed to the UNet (real-valued for Euler a). The result has
// x's length; x must be left unchanged.
type Denoiser interface {
	Predict(x []float32, shape []int, t float32, branches []Branch) ([]float32, error)
}

// DenoiserFunc adapts a function to Denoiser.
type DenoiserFunc func(x []float32, shape []int, t float32, branches []Branch) ([]float32, error)

// Predict implements Denoiser.
func (f DenoiserFunc) Predict(x []float32, shape []int, t float32, branches []Branch) ([]float32, error) {
	return f(x, shape, t, branches)
}

// Step is what one sampling step saw and produced, for tests and
// progress reports. Slices are only valid during the callback.
type Step struct {
	Index      int
	Timestep   float32
	ModelInput []float32 // scale_model_input of the latent entering the step
	Eps        []float32 // the model output after guidance
	PredX0     []float32 // x̂₀ (DDIM: after the clamp)
	Latent     []float32 // the latent after the step
	SigmaUp    float64   // Euler a
	SigmaDown  float64   // Euler a
}

// Options are the per-image settings of a sampling run.
type Options struct {
	// Guidance is the CFG scale. Guidance > 1 runs the model on the batch
	// [uncond, cond] each step and mixes ε = ε_u + scale·(ε_c − ε_u);
	// otherwise only the conditional branch runs (as kohya's pipeline).
	Guidance float64
	// Trace, when set, is called after every step.
	Trace func(*Step)
	// Init, when set, is called with the initial latent (x_T times
	// InitNoiseSigma) before the first step.
	Init func(x []float32)
}

// Run samples latents of shape [N, C, H, W]: it draws x_T from rng, scales
// it by InitNoiseSigma, runs every step of the plan with d (drawing the
// ancestral noise of Euler a from rng after x_T), and returns the final
// latent (what is divided by the VAE scale factor and decoded).
func (p *Plan) Run(shape []int, d Denoiser, rng RNG, o Options) ([]float32, error) {
	if len(shape) != 4 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 {
		return nil, fmt.Errorf("sample: latent shape %v: want [N, C, H, W]", shape)
	}
	n := shape[0] * shape[1] * shape[2] * shape[3]
	x := make([]float32, n)
	rng.Normal(x)
	for i, v := range x {
		x[i] = float32(float64(v) * p.InitNoiseSigma)
	}
	if o.Init != nil {
		o.Init(x)
	}
	cfg := o.Guidance > 1
	branches := make([]Branch, shape[0])
	for i := range branches {
		branches[i] = Cond
	}
	bshape := append([]int(nil), shape...)
	if cfg {
		branches = append(make([]Branch, shape[0]), branches...) // [uncond…, cond…]
		bshape[0] *= 2
	}
	in := make([]float32, n*len(branches)/shape[0])
	eps := make([]float32, n)
	x0 := make([]float32, n)
	noise := make([]float32, n)
	st := &Step{}
	for i, tf := range p.Timesteps {
		t := float32(tf)
		scale := 1.0
		if p.Method == EulerAncestral {
			scale = 1 / math.Sqrt(p.Sigmas[i]*p.Sigmas[i]+1)
		}
		for j, v := range x {
			in[j] = float32(float64(v) * scale)
		}
		if cfg {
			copy(in[n:], in[:n])
		}
		out, err := d.Predict(in, bshape, t, branches)
		if err != nil {
			return nil, fmt.Errorf("sample: step %d (t = %g): %w", i, t, err)
		}
		if len(out) != len(in) {
			return nil, fmt.Errorf("sample: step %d: the model returned %d values for %d inputs", i, len(out), len(in))
		}
		if cfg {
			g := o.Guidance
			for j := range eps {
				u, c := float64(out[j]), float64(out[n+j])
				eps[j] = float32(u + g*(c-u))
			}
		} else {
			copy(eps, out)
		}
		switch p.Method {
		case EulerAncestral:
			st.SigmaUp, st.SigmaDown = p.eulerStep(i, x, eps, x0, noise, rng)
		case DDIM:
			p.ddimStep(i, x, eps, x0, noise, rng)
		}
		if o.Trace != nil {
			*st = Step{Index: i, Timestep: t, ModelInput: in[:n], Eps: eps, PredX0: x0, Latent: x,
				SigmaUp: st.SigmaUp, SigmaDown: st.SigmaDown}
			o.Trace(st)
		}
	}
	return x, nil
}

// eulerStep advances x in place by one Euler-ancestral step (spec §6),
// writing x̂₀, and returns σ_up and σ_down.
func (p *Plan) eulerStep(i int, x, eps, x0, noise []float32, rng RNG) (up, down float64) {
	s, s1 := p.Sigmas[i], p.Sigmas[i+1]
	up = math.Sqrt(s1 * s1 * (s*s - s1*s1) / (s * s))
	down = math.Sqrt(s1*s1 - up*up)
	rng.Normal(noise) // drawn at every step, as diffusers does, also the last
	for j, xv := range x {
		xf := float64(xv)
		e := float64(eps[j])
		var pred float64
		if p.VPrediction {
			pred = -s/math.Sqrt(s*s+1)*e + xf/(s*s+1)
		} else {
			pred = xf - s*e
		}
		x0[j] = float32(pred)
		deriv := (xf - pred) / s
		x[j] = float32(xf + deriv*(down-s) + float64(noise[j])*up)
	}
	return up, down
}

// ddimStep advances x in place by one DDIM step (spec §7).
func (p *Plan) ddimStep(i int, x, eps, x0, noise []float32, rng RNG) {
	a, ap := p.AlphaT[i], p.AlphaPrev[i]
	sa, sb := math.Sqrt(a), math.Sqrt(1-a)
	lim := p.ClipRange
	if lim == 0 {
		lim = 1
	}
	var sd float64
	if p.Eta > 0 {
		variance := (1 - ap) / (1 - a) * (1 - a/ap)
		sd = p.Eta * math.Sqrt(variance)
		rng.Normal(noise)
	}
	dir := math.Sqrt(max(0, 1-ap-sd*sd))
	for j, xv := range x {
		xf := float64(xv)
		e := float64(eps[j])
		var pred float64
		if p.VPrediction {
			pred = sa*xf - sb*e
			e = sa*e + sb*xf
		} else {
			pred = (xf - sb*e) / sa
		}
		if p.ClipSample {
			pred = min(max(pred, -lim), lim)
		}
		x0[j] = float32(pred)
		v := math.Sqrt(ap)*pred + dir*e
		if sd > 0 {
			v += sd * float64(noise[j])
		}
		x[j] = float32(v)
	}
}
