package lycoris

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"loco/pkg/backend/dry"
	"loco/pkg/backend/profile"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// drySource gives every weight uninitialised storage of its shape.
type drySource struct {
	e  *tensor.Engine
	dt tensor.DType
}

func (s drySource) Load(key string, shape tensor.Shape) (*tensor.Tensor, error) {
	return s.e.Wrap(s.e.B.Alloc(s.dt, shape.Numel()), shape...), nil
}

// drySD15 builds the real-size SD 1.5 UNet, text encoder and LoCon (the
// BenchmarkTrainStepSD15 network: dim 8/alpha 4, conv 4/4, text encoder
// trained) on backend be with activations in act, and returns one training
// step (512 px, AdamW) at the given batch.
func drySD15(t testing.TB, be tensor.Backend, act tensor.DType, batch int, checkpoint bool, algo Algo) (step func()) {
	e := tensor.NewEngine(be)
	e.Act = act
	u, err := unet.New(nn.NewBuilder(UNetPrefix, drySource{e, act}), unet.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	tb := nn.NewBuilder(sd.TEPrefix, drySource{e, act})
	te := clip.New(tb, clip.DefaultConfig())
	if tb.Err() != nil {
		t.Fatal(tb.Err())
	}
	lin, conv := u.Layers()
	for _, nl := range te.Linears() {
		lin = append(lin, nl.L)
	}
	net, err := New(e, Config{Algo: algo, Dim: 8, Alpha: 4, ConvDim: 4, ConvAlpha: 4}, lin, conv, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	m := e.B.Alloc(tensor.F32, net.Len())
	v := e.B.Alloc(tensor.F32, net.Len())
	u.Checkpoint = checkpoint
	ids := make([][]int32, batch)
	for i := range ids {
		ids[i] = make([]int32, 77)
	}
	ts := make([]float32, batch)
	x := make([]float32, batch*4*64*64)
	n := 0
	return func() {
		n++
		xt := e.FromFloat32(x, batch, 4, 64, 64)
		ctx := te.Encode(ids, 1)
		target := e.FromFloat32(x, batch, 4, 64, 64)
		loss := tensor.MSELoss(u.Forward(xt, ts, ctx), target, nil)
		e.Backward(loss, 1024)
		e.B.AdamW(net.Params, net.Grads, m, v, tensor.AdamWParams{LR: 1e-4, Beta1: 0.9, Beta2: 0.999,
			Eps: 1e-8, WeightDecay: 0.01, Step: n, GradScale: 1.0 / 1024})
		net.ZeroGrad()
		e.EndStep()
	}
}

// opsPerStep counts the backend operations of one real-size training step
// (drySD15) on the dry backend: what a launch-bound GPU step pays for.
func opsPerStep(t testing.TB, act tensor.DType, batch int, checkpoint bool, algo Algo) (int, map[string]int) {
	prof := profile.New(dry.New(), false)
	step := drySD15(t, prof, act, batch, checkpoint, algo)
	step() // the first step includes set-up (the mirror)
	prof.Reset()
	step()
	return prof.Ops()
}

// TestOpsPerStepSD15 bounds the number of operations of the real-size
// training step in F16, the GPU's configuration: on a GPU each is a kernel
// launch, and the step is bound by their number (BENCHMARKS.md, "Where the
// GPU step goes"). The bounds are the counts measured after the last change
// that lowered them, so a change that adds operations to every layer fails
// here rather than on a GPU nobody has at hand.
func TestOpsPerStepSD15(t *testing.T) {
	for _, c := range []struct {
		algo       Algo
		checkpoint bool
		max        int
	}{{AlgoLoCon, false, 3989}, {AlgoLoCon, true, 5244}, {AlgoLoHa, false, 5666}} {
		total, byOp := opsPerStep(t, tensor.F16, 3, c.checkpoint, c.algo)
		t.Logf("%s checkpoint=%v: %d ops per step: %s", c.algo, c.checkpoint, total, opTable(byOp))
		if total > c.max {
			t.Errorf("%s checkpoint=%v: %d ops per step, want ≤ %d", c.algo, c.checkpoint, total, c.max)
		}
	}
}

// BenchmarkOpsPerStepSD15 reports the operation count of the F16 step.
func BenchmarkOpsPerStepSD15(b *testing.B) {
	for _, ck := range []bool{false, true} {
		b.Run(fmt.Sprintf("checkpoint=%v", ck), func(b *testing.B) {
			var total int
			for b.Loop() {
				total, _ = opsPerStep(b, tensor.F16, 3, ck, AlgoLoCon)
			}
			b.ReportMetric(float64(total), "ops/step")
		})
	}
}

// BenchmarkEngineStepSD15 is the host time of the engine itself — model
// code, tape, arena, shape checks — for the real-size F16 step, on the dry
// backend (no backend work at all): the floor under any backend's step
// time, which a GPU step pays on the CPU before its launches.
func BenchmarkEngineStepSD15(b *testing.B) {
	for _, batch := range []int{1, 3} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			step := drySD15(b, dry.New(), tensor.F16, batch, false, AlgoLoCon)
			step()
			total, _ := opsPerStep(b, tensor.F16, batch, false, AlgoLoCon)
			for b.Loop() {
				step()
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(sec*1e3, "ms/step")
			b.ReportMetric(sec*1e6/float64(total), "µs/op")
		})
	}
}

func opTable(byOp map[string]int) string {
	keys := make([]string, 0, len(byOp))
	for k := range byOp {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return byOp[keys[i]] > byOp[keys[j]] })
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s %d, ", k, byOp[k])
	}
	return strings.TrimSuffix(sb.String(), ", ")
}
