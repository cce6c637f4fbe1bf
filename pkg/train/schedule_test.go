package train

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"loco/pkg/golden"
)

func TestGoldenNoiseSchedule(t *testing.T) {
	golden.ForEach(t, "noise_schedule", func(t *testing.T, c *golden.Case) {
		var cfg struct {
			Steps int     `json:"timesteps"`
			Start float64 `json:"linear_start"`
			End   float64 `json:"linear_end"`
		}
		if err := json.Unmarshal(c.Config, &cfg); err != nil {
			t.Fatal(err)
		}
		s := NewSchedule(cfg.Steps, cfg.Start, cfg.End)
		f32 := func(v []float64, f func(float64) float64) []float32 {
			out := make([]float32, len(v))
			for i, x := range v {
				out[i] = float32(f(x))
			}
			return out
		}
		id := func(x float64) float64 { return x }
		c.Check(t, "betas", f32(s.Betas, id))
		c.Check(t, "alphas_cumprod", f32(s.AlphasCumprod, id))
		c.Check(t, "alphas_cumprod_float32_diffusers", s.AlphasCumprod32)
		c.Check(t, "sqrt_alphas_cumprod", f32(s.AlphasCumprod, sqrt))
		c.Check(t, "sqrt_one_minus_alphas_cumprod", f32(s.AlphasCumprod, func(x float64) float64 { return sqrt(1 - x) }))
		x0, noise := c.Float32(t, "x0"), c.Float32(t, "noise")
		ts := c.Int64(t, "timesteps")
		per := len(x0) / len(ts)
		got := make([]float32, len(x0))
		for b, tt := range ts {
			s.AddNoise(got[b*per:(b+1)*per], x0[b*per:(b+1)*per], noise[b*per:(b+1)*per], int(tt))
		}
		c.Check(t, "noisy", got)
	})
}

func TestGoldenLRSchedules(t *testing.T) {
	golden.ForEach(t, "lr_schedule", func(t *testing.T, c *golden.Case) {
		var cfg struct {
			Total      int                           `json:"total_steps"`
			BaseLR     float64                       `json:"base_lr"`
			Schedulers map[string]map[string]float64 `json:"schedulers"`
		}
		if err := json.Unmarshal(c.Config, &cfg); err != nil {
			t.Fatal(err)
		}
		n := 0
		for name := range c.Tensors {
			sched, wtxt, ok := strings.Cut(name, "/warmup")
			if !ok {
				continue
			}
			var w int
			fmt.Sscan(wtxt, &w)
			p := cfg.Schedulers[sched]
			l := LRSchedule{Name: sched, Warmup: w, Total: cfg.Total, NumCycles: p["num_cycles"],
				Power: p["power"], LRInit: cfg.BaseLR, LREnd: p["lr_end"]}
			if err := l.Validate(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got := make([]float32, cfg.Total+1)
			for s := range got {
				got[s] = float32(l.Multiplier(s))
			}
			c.Check(t, name, got)
			n++
		}
		if n == 0 {
			t.Fatal("no schedules in the case")
		}
	})
}

func TestLRScheduleValidate(t *testing.T) {
	for _, l := range []LRSchedule{{Name: "constant", Warmup: 3, Total: 10}, {Name: "adafactor", Total: 10}, {Name: "linear"}} {
		if l.Validate() == nil {
			t.Errorf("%+v accepted", l)
		}
	}
}

func sqrt(x float64) float64 { return math.Sqrt(x) }
