// Package train holds the maths of a LoCon training step as kohya
// sd-scripts does it (spec/train.md): the DDPM noise schedule, noise
// (offset, multires), learning-rate schedules, the loss, and the loop.
package train

import (
	"fmt"
	"math"
)

// Schedule is the SD 1.x DDPM noise schedule ("scaled_linear", 1000 steps,
// β from 0.00085 to 0.012).
type Schedule struct {
	Betas         []float64
	AlphasCumprod []float64 // ᾱ_t in float64
	// AlphasCumprod32 is ᾱ_t as diffusers' DDPMScheduler holds it and kohya
	// trains with it: float32 linspace, square, cumprod in float32.
	AlphasCumprod32 []float32
}

// NewSchedule builds the schedule for n steps between betaStart and betaEnd.
func NewSchedule(n int, betaStart, betaEnd float64) *Schedule {
	s := &Schedule{Betas: make([]float64, n), AlphasCumprod: make([]float64, n), AlphasCumprod32: make([]float32, n)}
	a, b := math.Sqrt(betaStart), math.Sqrt(betaEnd)
	prod := 1.0
	for t := 0; t < n; t++ {
		r := a + float64(t)*(b-a)/float64(n-1)
		s.Betas[t] = r * r
		prod *= 1 - s.Betas[t]
		s.AlphasCumprod[t] = prod
	}
	// torch.linspace in float32: step in float32, the first half counted up
	// from start, the second half down from end.
	a32, b32 := float32(a), float32(b)
	step := (b32 - a32) / float32(n-1)
	var p32 float32 = 1
	for t := 0; t < n; t++ {
		var r float32
		if t < n/2 {
			r = a32 + step*float32(t)
		} else {
			r = b32 - step*float32(n-1-t)
		}
		p32 *= 1 - r*r
		s.AlphasCumprod32[t] = p32
	}
	return s
}

// SD1 is the SD 1.x schedule.
func SD1() *Schedule { return NewSchedule(1000, 0.00085, 0.012) }

// AddNoise writes √ᾱ_t·x0 + √(1−ᾱ_t)·noise into dst for one sample at
// timestep t, using the float32 ᾱ kohya trains with.
func (s *Schedule) AddNoise(dst, x0, noise []float32, t int) {
	ac := s.AlphasCumprod32[t]
	a, b := float32(math.Sqrt(float64(ac))), float32(math.Sqrt(float64(1-ac)))
	for i := range dst {
		dst[i] = a*x0[i] + b*noise[i]
	}
}

// LRSchedule names a kohya/transformers learning-rate scheduler.
type LRSchedule struct {
	Name      string  // constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial
	Warmup    int     // warmup steps
	Total     int     // total optimizer steps
	NumCycles float64 // cosine (0.5, kohya does not pass it) and cosine_with_restarts
	Power     float64 // polynomial
	LRInit    float64 // polynomial: the optimizer's base lr
	LREnd     float64 // polynomial: 1e-7
}

// Validate rejects unknown names and kohya's refusals.
func (l LRSchedule) Validate() error {
	switch l.Name {
	case "constant":
		if l.Warmup > 0 {
			return fmt.Errorf("lr scheduler constant does not take warmup steps (kohya refuses it); use constant_with_warmup")
		}
	case "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial":
	default:
		return fmt.Errorf("unknown lr scheduler %q (constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial)", l.Name)
	}
	if l.Total <= 0 || l.Warmup < 0 {
		return fmt.Errorf("lr scheduler: %d total steps, %d warmup", l.Total, l.Warmup)
	}
	return nil
}

// Multiplier is λ(s) for the 0-based optimizer step s: the step trains with
// base_lr·λ(s).
func (l LRSchedule) Multiplier(s int) float64 {
	w, total := l.Warmup, l.Total
	if l.Name == "constant" {
		return 1
	}
	if s < w {
		return float64(s) / float64(max(1, w))
	}
	progress := float64(s-w) / float64(max(1, total-w))
	switch l.Name {
	case "constant_with_warmup":
		return 1
	case "linear":
		return math.Max(0, float64(total-s)/float64(max(1, total-w)))
	case "cosine":
		c := l.NumCycles
		if c == 0 {
			c = 0.5
		}
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*c*2*progress)))
	case "cosine_with_restarts":
		if progress >= 1 {
			return 0
		}
		c := l.NumCycles
		if c == 0 {
			c = 1
		}
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*math.Mod(c*progress, 1))))
	case "polynomial":
		if s > total {
			return l.LREnd / l.LRInit
		}
		p := l.Power
		if p == 0 {
			p = 1
		}
		rem := 1 - float64(s-w)/float64(total-w)
		return ((l.LRInit-l.LREnd)*math.Pow(rem, p) + l.LREnd) / l.LRInit
	}
	return 1
}
