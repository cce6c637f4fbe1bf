package sample

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"loco/pkg/golden"
	"loco/pkg/train"
)

// samplerCaseConfig is case.json → config of kind sampler.
type samplerCaseConfig struct {
	Sampler          string   `json:"sampler"`
	Preset           string   `json:"preset"`
	Steps            int      `json:"num_inference_steps"`
	TrainSteps       int      `json:"num_train_timesteps"`
	BetaStart        float64  `json:"beta_start"`
	BetaEnd          float64  `json:"beta_end"`
	BetaSchedule     string   `json:"beta_schedule"`
	PredictionType   string   `json:"prediction_type"`
	TimestepSpacing  string   `json:"timestep_spacing"`
	StepsOffset      int      `json:"steps_offset"`
	SetAlphaToOne    bool     `json:"set_alpha_to_one"`
	ClipSample       bool     `json:"clip_sample"`
	ClipSampleRange  float64  `json:"clip_sample_range"`
	Eta              float64  `json:"eta"`
	UseClippedOutput bool     `json:"use_clipped_model_output"`
	Guidance         *float64 `json:"guidance_scale"`
	LatentShape      []int    `json:"latent_shape"`
}

// configFromCase builds the sampler configuration from the case's fields
// (not from its preset name), so that other cases of the kind run too.
func configFromCase(cc samplerCaseConfig) (Config, error) {
	var c Config
	switch cc.Sampler {
	case "euler_a":
		c.Method = EulerAncestral
	case "ddim":
		c.Method = DDIM
	default:
		return c, fmt.Errorf("sampler %q", cc.Sampler)
	}
	switch cc.TimestepSpacing {
	case "leading":
		c.Spacing = Leading
	case "trailing":
		c.Spacing = Trailing
	case "linspace":
		c.Spacing = Linspace
	default:
		return c, fmt.Errorf("timestep_spacing %q", cc.TimestepSpacing)
	}
	switch cc.PredictionType {
	case "epsilon":
	case "v_prediction":
		c.VPrediction = true
	default:
		return c, fmt.Errorf("prediction_type %q", cc.PredictionType)
	}
	if cc.BetaSchedule != "scaled_linear" || cc.UseClippedOutput {
		return c, fmt.Errorf("beta_schedule %q, use_clipped_model_output %v", cc.BetaSchedule, cc.UseClippedOutput)
	}
	c.StepsOffset = cc.StepsOffset
	c.SetAlphaToOne = cc.SetAlphaToOne
	c.ClipSample = cc.ClipSample
	c.ClipRange = cc.ClipSampleRange
	c.Eta = cc.Eta
	return c, nil
}

// presetConfig is the configuration loco's named preset gives.
func presetConfig(sampler, preset string) (Config, bool) {
	switch {
	case sampler == "euler_a":
		return EulerAncestralKohya(), true // kohya and SD 1.5 give the same
	case sampler == "ddim" && preset == "kohya":
		return DDIMKohya(), true
	case sampler == "ddim" && preset == "sd15":
		return DDIMSD15(), true
	}
	return Config{}, false
}

// queueRNG hands out the given arrays in order.
type queueRNG struct {
	t    *testing.T
	vals [][]float32
}

func (q *queueRNG) Normal(dst []float32) {
	if len(q.vals) == 0 {
		q.t.Fatalf("sampler drew more noise than the case provides")
	}
	if len(q.vals[0]) != len(dst) {
		q.t.Fatalf("noise draw of %d values, case gives %d", len(dst), len(q.vals[0]))
	}
	copy(dst, q.vals[0])
	q.vals = q.vals[1:]
}

func slices(v []float32, n int) [][]float32 {
	out := make([][]float32, n)
	m := len(v) / n
	for i := range out {
		out[i] = v[i*m : (i+1)*m]
	}
	return out
}

func perStep(c *golden.Case) map[string]bool {
	var raw map[string]struct {
		PerStep bool `json:"per_step"`
	}
	json.Unmarshal(c.Raw["tensors"], &raw)
	out := map[string]bool{}
	for k, v := range raw {
		out[k] = v.PerStep
	}
	return out
}

// checkSampler compares got with output name: per step when the case says
// so (an all-zero reference slice must be ‖got‖ ≤ zero_atol), else whole.
func checkSampler(t *testing.T, c *golden.Case, per map[string]bool, name string, got []float32) float64 {
	t.Helper()
	if _, ok := c.Tensors[name]; !ok {
		return 0
	}
	if !per[name] {
		return c.Check(t, name, got)
	}
	want := c.Float32(t, name)
	if len(got) != len(want) {
		t.Errorf("%s/%s: got %d values, want %d", c.Name, name, len(got), len(want))
		return math.Inf(1)
	}
	n := c.Shape(name)[0]
	worst := 0.0
	gs, ws := slices(got, n), slices(want, n)
	for i := range gs {
		if golden.Norm(ws[i]) == 0 {
			if nz := golden.Norm(gs[i]); !(nz <= c.ZeroAtol) {
				t.Errorf("%s/%s[%d]: reference is zero, ‖got‖ = %.3g > %.3g", c.Name, name, i, nz, c.ZeroAtol)
			}
			continue
		}
		worst = max(worst, golden.CheckRel(t, fmt.Sprintf("%s/%s[%d]", c.Name, name, i), gs[i], ws[i], c.Tol(name)))
	}
	return worst
}

func TestGoldenSampler(t *testing.T) {
	golden.ForEach(t, "sampler", func(t *testing.T, c *golden.Case) {
		var cc samplerCaseConfig
		if err := json.Unmarshal(c.Config, &cc); err != nil {
			t.Fatal(err)
		}
		cfg, err := configFromCase(cc)
		if err != nil {
			t.Fatalf("%s: unsupported case config: %v", c.Name, err)
		}
		if pc, ok := presetConfig(cc.Sampler, cc.Preset); ok {
			if normalized(pc) != normalized(cfg) {
				t.Errorf("%s: preset %s/%s is %+v, the case configures %+v", c.Name, cc.Sampler, cc.Preset, pc, cfg)
			}
		}
		sched := train.NewSchedule(cc.TrainSteps, cc.BetaStart, cc.BetaEnd)
		plan, err := cfg.NewPlan(cc.Steps, sched)
		if err != nil {
			t.Fatal(err)
		}
		n := cc.Steps
		per := perStep(c)

		// Schedule quantities.
		if c.Tensors["timesteps"].DType == "int64" {
			want := c.Int64(t, "timesteps")
			for i, v := range plan.Timesteps {
				if float64(want[i]) != v {
					t.Errorf("%s/timesteps[%d] = %g, want %d", c.Name, i, v, want[i])
				}
			}
		} else {
			checkSampler(t, c, per, "timesteps", f32(plan.Timesteps))
		}
		if _, ok := c.Tensors["prev_timesteps"]; ok {
			want := c.Int64(t, "prev_timesteps")
			for i, v := range plan.PrevTimesteps {
				if int64(v) != want[i] {
					t.Errorf("%s/prev_timesteps[%d] = %d, want %d", c.Name, i, v, want[i])
				}
			}
		}
		checkSampler(t, c, per, "init_noise_sigma", []float32{float32(plan.InitNoiseSigma)})
		if plan.Method == EulerAncestral {
			checkSampler(t, c, per, "sigmas", f32(plan.Sigmas))
		} else {
			checkSampler(t, c, per, "alpha_prod_t", f32(plan.AlphaT))
			checkSampler(t, c, per, "alpha_prod_t_prev", f32(plan.AlphaPrev))
		}

		// The loop, with the fake UNet and the given noise.
		shape := cc.LatentShape
		draws := [][]float32{c.Float32(t, "x_T")}
		if _, ok := c.Tensors["noise"]; ok {
			draws = append(draws, slices(c.Float32(t, "noise"), n)...)
		}
		rng := &queueRNG{t: t, vals: draws}
		guidance := 0.0
		var epsU, epsC [][]float32
		if cc.Guidance != nil {
			guidance = *cc.Guidance
			epsU = slices(c.Float32(t, "eps_uncond"), n)
			epsC = slices(c.Float32(t, "eps_cond"), n)
		} else {
			epsC = slices(c.Float32(t, "eps"), n)
		}
		step := 0
		fake := DenoiserFunc(func(x []float32, bs []int, ts float32, br []Branch) ([]float32, error) {
			if ts != float32(plan.Timesteps[step]) {
				t.Errorf("step %d: model got t = %g, want %g", step, ts, plan.Timesteps[step])
			}
			var out []float32
			for _, b := range br {
				if b == Uncond {
					out = append(out, epsU[step]...)
				} else {
					out = append(out, epsC[step]...)
				}
			}
			if cc.Guidance != nil && (len(br) != 2 || br[0] != Uncond || br[1] != Cond) {
				t.Errorf("step %d: CFG batch %v, want [uncond cond]", step, br)
			}
			return out, nil
		})
		var init []float32
		var modelIn, eps, x0, lat, up, down []float32
		final, err := plan.Run(shape, fake, rng, Options{
			Guidance: guidance,
			Init:     func(x []float32) { init = append([]float32(nil), x...) },
			Trace: func(s *Step) {
				modelIn = append(modelIn, s.ModelInput...)
				eps = append(eps, s.Eps...)
				x0 = append(x0, s.PredX0...)
				lat = append(lat, s.Latent...)
				up = append(up, float32(s.SigmaUp))
				down = append(down, float32(s.SigmaDown))
				step++
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(rng.vals) != 0 {
			t.Errorf("%s: %d noise draws left unused", c.Name, len(rng.vals))
		}
		report := map[string]float64{}
		report["latents_init"] = checkSampler(t, c, per, "latents_init", init)
		report["model_input"] = checkSampler(t, c, per, "model_input", modelIn)
		report["eps_guided"] = checkSampler(t, c, per, "eps_guided", eps)
		report["pred_x0"] = checkSampler(t, c, per, "pred_x0", x0)
		report["latents"] = checkSampler(t, c, per, "latents", lat)
		report["latents_final"] = checkSampler(t, c, per, "latents_final", final)
		if plan.Method == EulerAncestral {
			report["sigma_up"] = checkSampler(t, c, per, "sigma_up", up)
			report["sigma_down"] = checkSampler(t, c, per, "sigma_down", down)
		}
		t.Logf("%s: %s %d steps, CFG %v: worst per-step rel err %v", c.Name, cfg.Method, n, guidance, report)
	})
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// normalized drops the clip range where no clamp happens and spells the
// default range out.
func normalized(c Config) Config {
	if !c.ClipSample {
		c.ClipRange = 0
	} else if c.ClipRange == 0 {
		c.ClipRange = 1
	}
	return c
}
