package sample

import (
	"fmt"
	"math"
	"strings"

	"loco/pkg/train"
)

// Method is a sampling algorithm.
type Method int

const (
	// EulerAncestral is k-diffusion's "euler_a" (diffusers
	// EulerAncestralDiscreteScheduler), spec/sample.md §6.
	EulerAncestral Method = iota
	// DDIM is diffusers' DDIMScheduler, spec/sample.md §7.
	DDIM
)

func (m Method) String() string {
	switch m {
	case EulerAncestral:
		return "euler_a"
	case DDIM:
		return "ddim"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// Spacing is how the inference timesteps are laid over the 1000 training
// steps (spec/sample.md §5).
type Spacing int

const (
	Leading  Spacing = iota // k = ⌊1000/n⌋; t_j = (n−1−j)·k + offset
	Trailing                // t_j = round(1000 − j·1000/n) − 1
	Linspace                // t_j = 999·(1 − j/(n−1)), real-valued
)

func (s Spacing) String() string {
	switch s {
	case Leading:
		return "leading"
	case Trailing:
		return "trailing"
	case Linspace:
		return "linspace"
	}
	return fmt.Sprintf("Spacing(%d)", int(s))
}

// Config configures a sampler the way a diffusers scheduler config does.
type Config struct {
	Method        Method
	Spacing       Spacing
	StepsOffset   int     // added to leading timesteps
	SetAlphaToOne bool    // DDIM: ᾱ after the last step is 1 (else ᾱ₀)
	ClipSample    bool    // DDIM: clamp x̂₀ to ±ClipRange (in latent space)
	ClipRange     float64 // 1 when zero
	Eta           float64 // DDIM: η (0 in every pipeline loco mirrors)
	VPrediction   bool    // the model predicts v instead of ε
}

// EulerAncestralKohya is Euler ancestral as kohya sd-scripts builds it for
// sample images (class defaults: linspace spacing). SD 1.5's own scheduler
// config gives the same scheduler.
func EulerAncestralKohya() Config {
	return Config{Method: EulerAncestral, Spacing: Linspace}
}

// DDIMKohya is DDIM as kohya sd-scripts builds it since v0.8.4: leading
// spacing, steps_offset 0, set_alpha_to_one, and x̂₀ clamped to [−1, 1]
// in latent space.
func DDIMKohya() Config {
	return Config{Method: DDIM, Spacing: Leading, SetAlphaToOne: true, ClipSample: true, ClipRange: 1}
}

// DDIMSD15 is DDIM from SD 1.5's scheduler_config.json: leading spacing,
// steps_offset 1, no alpha-to-one, no clamp.
func DDIMSD15() Config {
	return Config{Method: DDIM, Spacing: Leading, StepsOffset: 1}
}

// Names lists the sampler names ByName accepts.
var Names = []string{"euler_a", "k_euler_a", "ddim", "ddim_kohya", "ddim_sd15"}

// kohyaOnly are names kohya accepts that loco does not implement.
var kohyaOnly = []string{"pndm", "lms", "k_lms", "euler", "k_euler", "heun", "dpm_2", "k_dpm_2",
	"dpm_2_a", "k_dpm_2_a", "dpmsolver", "dpmsolver++", "dpmsingle", "ddpm"}

// ByName maps a sampler name (kohya's --sample_sampler spelling, case
// ignored) to its configuration. "ddim" is kohya's DDIM (the default of
// sd-scripts), "ddim_sd15" the SD 1.5-config DDIM. Names kohya knows but
// loco does not implement are errors, not a silent fall-back to DDIM.
func ByName(name string) (Config, error) {
	switch n := strings.ToLower(strings.TrimSpace(name)); n {
	case "euler_a", "k_euler_a":
		return EulerAncestralKohya(), nil
	case "ddim", "ddim_kohya":
		return DDIMKohya(), nil
	case "ddim_sd15":
		return DDIMSD15(), nil
	default:
		for _, k := range kohyaOnly {
			if n == k {
				return Config{}, fmt.Errorf("sampler %q is not implemented in loco (use one of %s)", name, strings.Join(Names, ", "))
			}
		}
		return Config{}, fmt.Errorf("unknown sampler %q (use one of %s)", name, strings.Join(Names, ", "))
	}
}

// DisplayName is the sampler as AUTOMATIC1111 names it in PNG parameters.
func (c Config) DisplayName() string {
	if c.Method == EulerAncestral {
		return "Euler a"
	}
	return "DDIM"
}

// Plan is a sampler configured for a number of steps: every schedule
// quantity of the loop, computed in float64 from the float64 ᾱ.
type Plan struct {
	Config
	Steps int
	// Timesteps handed to the UNet at each step (real-valued for Euler a
	// with linspace spacing; integers otherwise).
	Timesteps []float64
	// InitNoiseSigma scales the start noise: σ₀ for Euler a with linspace or
	// trailing spacing, √(σ₀²+1) for leading, 1 for DDIM.
	InitNoiseSigma float64

	// Euler a: σ at each timestep (interpolated), then 0 (Steps+1 values).
	Sigmas []float64

	// DDIM: t − ⌊1000/n⌋, ᾱ_t and ᾱ_{t'} (or the final value when t' < 0).
	PrevTimesteps []int
	AlphaT        []float64
	AlphaPrev     []float64
}

// NewPlan lays out steps sampling steps of c over the training schedule s
// (train.SD1() for SD 1.x).
func (c Config) NewPlan(steps int, s *train.Schedule) (*Plan, error) {
	T := len(s.AlphasCumprod)
	if steps < 1 || steps > T {
		return nil, fmt.Errorf("sampler %s: %d steps, want 1…%d", c.Method, steps, T)
	}
	p := &Plan{Config: c, Steps: steps}
	k := T / steps
	switch c.Spacing {
	case Leading:
		for j := range steps {
			p.Timesteps = append(p.Timesteps, float64((steps-1-j)*k+c.StepsOffset))
		}
	case Trailing:
		step := float64(T) / float64(steps)
		for j := range steps {
			p.Timesteps = append(p.Timesteps, math.RoundToEven(float64(T)-float64(j)*step)-1)
		}
	case Linspace:
		for j := range steps {
			v := 0.0
			if steps > 1 {
				v = float64(T-1) * (1 - float64(j)/float64(steps-1))
			}
			if c.Method == DDIM {
				v = math.RoundToEven(v)
			}
			p.Timesteps = append(p.Timesteps, v)
		}
	default:
		return nil, fmt.Errorf("sampler %s: unknown timestep spacing %v", c.Method, c.Spacing)
	}
	for _, t := range p.Timesteps {
		if t < 0 || t > float64(T-1) {
			return nil, fmt.Errorf("sampler %s: timestep %g outside 0…%d (steps_offset %d)", c.Method, t, T-1, c.StepsOffset)
		}
	}
	switch c.Method {
	case EulerAncestral:
		sig := make([]float64, T)
		for t, a := range s.AlphasCumprod {
			sig[t] = math.Sqrt((1 - a) / a)
		}
		for _, t := range p.Timesteps {
			i := int(math.Floor(t))
			f := t - float64(i)
			v := sig[i]
			if f > 0 {
				v = sig[i] + f*(sig[i+1]-sig[i])
			}
			p.Sigmas = append(p.Sigmas, v)
		}
		p.Sigmas = append(p.Sigmas, 0)
		p.InitNoiseSigma = p.Sigmas[0]
		for _, v := range p.Sigmas {
			p.InitNoiseSigma = max(p.InitNoiseSigma, v)
		}
		if c.Spacing == Leading {
			p.InitNoiseSigma = math.Sqrt(p.InitNoiseSigma*p.InitNoiseSigma + 1)
		}
	case DDIM:
		final := s.AlphasCumprod[0]
		if c.SetAlphaToOne {
			final = 1
		}
		for _, tf := range p.Timesteps {
			t := int(tf)
			prev := t - k
			p.PrevTimesteps = append(p.PrevTimesteps, prev)
			p.AlphaT = append(p.AlphaT, s.AlphasCumprod[t])
			if prev >= 0 {
				p.AlphaPrev = append(p.AlphaPrev, s.AlphasCumprod[prev])
			} else {
				p.AlphaPrev = append(p.AlphaPrev, final)
			}
		}
		p.InitNoiseSigma = 1
	default:
		return nil, fmt.Errorf("unknown sampler method %v", c.Method)
	}
	return p, nil
}
