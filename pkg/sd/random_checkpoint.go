package sd

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"

	"loco/pkg/nn"
	"loco/pkg/safetensors"
)

// Schedule of SD 1.x: DDPM, 1000 steps, "scaled linear" betas from
// 0.00085 to 0.012 (v1-inference.yaml linear_start, linear_end).
const (
	scheduleSteps = 1000
	linearStart   = 0.00085
	linearEnd     = 0.012
)

// ldmScheduleBuffers computes the buffers LDM's DDPM.register_schedule
// stores in every single-file checkpoint (v_posterior 0), in float64.
func ldmScheduleBuffers() map[string][]float64 {
	n := scheduleSteps
	b := make(map[string][]float64)
	mk := func(name string) []float64 { v := make([]float64, n); b[name] = v; return v }
	betas, acp, acpPrev := mk("betas"), mk("alphas_cumprod"), mk("alphas_cumprod_prev")
	s0, s1 := math.Sqrt(linearStart), math.Sqrt(linearEnd)
	prod := 1.0
	for i := range n {
		r := s0 + (s1-s0)*float64(i)/float64(n-1)
		betas[i] = r * r
		acpPrev[i] = prod
		prod *= 1 - betas[i]
		acp[i] = prod
	}
	sqrtAcp, sqrt1m, log1m := mk("sqrt_alphas_cumprod"), mk("sqrt_one_minus_alphas_cumprod"), mk("log_one_minus_alphas_cumprod")
	recip, recipm1 := mk("sqrt_recip_alphas_cumprod"), mk("sqrt_recipm1_alphas_cumprod")
	pv, plv, c1, c2 := mk("posterior_variance"), mk("posterior_log_variance_clipped"), mk("posterior_mean_coef1"), mk("posterior_mean_coef2")
	for i := range n {
		sqrtAcp[i] = math.Sqrt(acp[i])
		sqrt1m[i] = math.Sqrt(1 - acp[i])
		log1m[i] = math.Log(1 - acp[i])
		recip[i] = math.Sqrt(1 / acp[i])
		recipm1[i] = math.Sqrt(1/acp[i] - 1)
		pv[i] = betas[i] * (1 - acpPrev[i]) / (1 - acp[i])
		plv[i] = math.Log(math.Max(pv[i], 1e-20))
		c1[i] = betas[i] * math.Sqrt(acpPrev[i]) / (1 - acp[i])
		c2[i] = (1 - acpPrev[i]) * math.Sqrt(1-betas[i]) / (1 - acp[i])
	}
	return b
}

// WriteRandomCheckpoint writes a single-file checkpoint holding every
// parameter of params (full single-file keys and shapes, as nn.Builder's
// shape-only mode lists them) with seeded random values (RandomValues), in
// dtype dt, plus the extra tensors real SD 1.x checkpoints carry and no
// model consumes: the LDM schedule buffers (betas, alphas_cumprod, …, with
// SD 1.x's values) and, when a text encoder is present, its int64
// embeddings.position_ids. The file is streamed tensor by tensor through
// safetensors.Writer, so memory stays at one tensor (about 150 MB for
// SD 1.5's token embedding) whatever the model size; it appears under path
// only when complete.
func WriteRandomCheckpoint(path string, params []nn.ParamSpec, dt safetensors.DType, seed uint64, metadata map[string]string) error {
	var specs []safetensors.Spec
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.Key] {
			return fmt.Errorf("%s: parameter %s listed twice", path, p.Key)
		}
		seen[p.Key] = true
		specs = append(specs, safetensors.Spec{Name: p.Key, DType: dt, Shape: []int(p.Shape)})
	}
	sched := ldmScheduleBuffers()
	for _, name := range slices.Sorted(maps.Keys(sched)) {
		specs = append(specs, safetensors.Spec{Name: name, DType: dt, Shape: []int{scheduleSteps}})
	}
	posKey := TEPrefix + "embeddings.position_ids"
	ctxLen := 0
	for _, p := range params {
		if p.Key == TEPrefix+"embeddings.position_embedding.weight" && len(p.Shape) == 2 {
			ctxLen = p.Shape[0]
		}
	}
	if ctxLen > 0 {
		specs = append(specs, safetensors.Spec{Name: posKey, DType: safetensors.I64, Shape: []int{1, ctxLen}})
	}
	w, err := safetensors.Create(path, specs, metadata)
	if err != nil {
		return err
	}
	for _, p := range params {
		if err := w.WriteFloat32(p.Key, RandomValues(seed, p.Key, p.Shape)); err != nil {
			w.Abort()
			return err
		}
	}
	for name, v := range sched {
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = float32(x)
		}
		if err := w.WriteFloat32(name, f); err != nil {
			w.Abort()
			return err
		}
	}
	if ctxLen > 0 {
		raw := make([]byte, 8*ctxLen)
		for i := range ctxLen {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(i))
		}
		if err := w.Write(posKey, raw); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}
