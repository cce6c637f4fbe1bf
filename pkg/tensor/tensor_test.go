package tensor_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/tensor"
)

func randVals(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// checkGrad compares the tape's gradients of loss = MSE(f(inputs), target)
// with central finite differences for every input. The CPU backend computes
// in float32, so the step and the tolerance are float32-sized.
func checkGrad(t *testing.T, f func(in []*tensor.Tensor) *tensor.Tensor, shapes ...[]int) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(len(t.Name())), 7))
	be := cpu.New()
	be.Poison = true // a fresh gradient buffer read as if zero shows up as NaN
	e := tensor.NewEngine(be)
	vals := make([][]float32, len(shapes))
	for i, s := range shapes {
		vals[i] = randVals(r, tensor.Shape(s).Numel())
	}
	var target []float32
	loss := func(withGrad bool) (float64, [][]float32) {
		in := make([]*tensor.Tensor, len(shapes))
		grads := make([]tensor.Storage, len(shapes))
		for i, s := range shapes {
			in[i] = e.FromFloat32(vals[i], s...)
			if withGrad {
				grads[i] = e.B.Alloc(tensor.F32, in[i].Len())
				e.B.Fill(grads[i], 0)
				in[i].Param(grads[i])
			}
		}
		out := f(in)
		if target == nil {
			target = randVals(r, out.Len())
		}
		l := tensor.MSELoss(out, e.FromFloat32(target, out.Shape()...), nil)
		lv := float64(l.Item())
		var gs [][]float32
		if withGrad {
			e.Backward(l, 1)
			for _, g := range grads {
				h := make([]float32, g.Len())
				e.B.Download(h, g)
				gs = append(gs, h)
				e.B.Free(g)
			}
		}
		e.EndStep()
		return lv, gs
	}
	_, got := loss(true)
	const h = 1e-2
	for i := range vals {
		want := make([]float32, len(vals[i]))
		for j := range vals[i] {
			orig := vals[i][j]
			vals[i][j] = orig + h
			lp, _ := loss(false)
			vals[i][j] = orig - h
			lm, _ := loss(false)
			vals[i][j] = orig
			want[j] = float32((lp - lm) / (2 * h))
		}
		var num, den float64
		for j := range want {
			d := float64(got[i][j] - want[j])
			num += d * d
			den += float64(want[j]) * float64(want[j])
		}
		rel := math.Sqrt(num / den)
		if !(rel < 2e-2) {
			t.Errorf("input %d %v: gradient relative L2 error %.3g against finite differences; got %v, want %v",
				i, shapes[i], rel, got[i][:min(4, len(want))], want[:min(4, len(want))])
		}
	}
}

func TestGradients(t *testing.T) {
	tests := []struct {
		name   string
		f      func(in []*tensor.Tensor) *tensor.Tensor
		shapes [][]int
	}{
		{"MatMul", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMul(in[0], in[1], false, false) }, [][]int{{2, 3, 4}, {2, 4, 5}}},
		{"MatMulTA", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMul(in[0], in[1], true, false) }, [][]int{{2, 4, 3}, {2, 4, 5}}},
		{"MatMulTB", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMul(in[0], in[1], false, true) }, [][]int{{2, 3, 4}, {2, 5, 4}}},
		{"MatMulTT", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMul(in[0], in[1], true, true) }, [][]int{{2, 4, 3}, {2, 5, 4}}},
		{"MatMulScaledTA", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMulScaled(in[0], in[1], true, false, -0.6) }, [][]int{{2, 4, 3}, {2, 4, 5}}},
		{"MatMulScaledBroadcastTB", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMulScaled(in[0], in[1], false, true, 1.7) }, [][]int{{3, 2, 4}, {5, 4}}},
		{"MatMulBroadcastB", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.MatMul(in[0], in[1], false, true) }, [][]int{{3, 2, 4}, {5, 4}}},
		{"Linear", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Linear(in[0], in[1], in[2]) }, [][]int{{2, 3, 4}, {5, 4}, {5}}},
		// A computed weight (a LoHa layer's W + ΔW) gets a fresh gradient
		// that the weight GEMM overwrites.
		{"LinearComputedWeight", func(in []*tensor.Tensor) *tensor.Tensor {
			return tensor.Linear(in[0], tensor.SiLU(in[1]), in[2])
		}, [][]int{{2, 3, 4}, {5, 4}, {5}}},
		{"LinearLowRankComputedWeight", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.Linear(in[0], in[3], nil)
			return tensor.LinearLowRank(in[0], tensor.SiLU(in[1]), in[2], h, in[4], 0.7)
		}, [][]int{{2, 3, 4}, {5, 4}, {5}, {2, 4}, {5, 2}}},
		{"Conv2D", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Conv2D(in[0], in[1], in[2], 2, 1) }, [][]int{{2, 3, 5, 6}, {4, 3, 3, 3}, {4}}},
		// Stride 1: the CPU backend's flipped-kernel input gradient, run
		// beside the weight gradient (Engine.both) on two threads.
		{"Conv2DSame", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Conv2D(in[0], in[1], nil, 1, 1) }, [][]int{{2, 3, 5, 6}, {4, 3, 3, 3}}},
		// LoCon layers: the low-rank branch h computed from x by the
		// caller, as pkg/lycoris does.
		{"LinearLowRank", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.Linear(in[0], in[3], nil)
			return tensor.LinearLowRank(in[0], in[1], in[2], h, in[4], 0.7)
		}, [][]int{{2, 3, 4}, {5, 4}, {5}, {2, 4}, {5, 2}}},
		{"Conv2DLowRank", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.Conv2D(in[0], in[3], nil, 2, 1)
			return tensor.Conv2DLowRank(in[0], in[1], in[2], 2, 1, h, in[4], -1.3)
		}, [][]int{{2, 3, 5, 6}, {4, 3, 3, 3}, {4}, {2, 3, 3, 3}, {4, 2, 1, 1}}},
		// h used twice (the branch input also feeds the result), rank-2 up.
		{"Conv2DLowRankShared", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.Conv2D(in[0], in[2], nil, 1, 0)
			y := tensor.Conv2DLowRank(in[0], in[1], nil, 1, 0, h, in[3], 0.5)
			return tensor.Concat(1, y, h)
		}, [][]int{{3, 2, 3, 3}, {4, 2, 1, 1}, {3, 2, 1, 1}, {4, 3}}},
		{"GroupNormSiLU", func(in []*tensor.Tensor) *tensor.Tensor {
			return tensor.GroupNorm(in[0], in[1], in[2], 2, 1e-5, true)
		}, [][]int{{2, 4, 3, 3}, {4}, {4}}},
		{"LayerNorm", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.LayerNorm(in[0], in[1], in[2], 1e-5) }, [][]int{{3, 6}, {6}, {6}}},
		{"GEGLU", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.GEGLU(in[0]) }, [][]int{{3, 8}}},
		{"Softmax", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Softmax(in[0]) }, [][]int{{3, 5}}},
		{"Attention", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Attention(in[0], in[1], in[2], 2, false) }, [][]int{{2, 3, 8}, {2, 5, 8}, {2, 5, 8}}},
		// Attention writes fresh q/k/v gradients (Overwrite) only when all
		// are fresh and distinct: k and v the same tensor, and k with a
		// gradient already (a later consumer) take the adding path.
		{"AttentionKVSame", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Attention(in[0], in[1], in[1], 2, false) }, [][]int{{2, 3, 8}, {2, 5, 8}}},
		{"AttentionGradExisting", func(in []*tensor.Tensor) *tensor.Tensor {
			k := tensor.SiLU(in[1])
			o := tensor.Attention(in[0], k, in[2], 2, false)
			return tensor.Concat(1, o, tensor.Scale(k, 2))
		}, [][]int{{2, 3, 8}, {2, 5, 8}, {2, 5, 8}}},
		{"AttentionCausal", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Attention(in[0], in[1], in[2], 2, true) }, [][]int{{1, 4, 6}, {1, 4, 6}, {1, 4, 6}}},
		{"AddChannel", func(in []*tensor.Tensor) *tensor.Tensor {
			return tensor.Add(in[0], tensor.Reshape(in[1], 2, 3, 1, 1))
		}, [][]int{{2, 3, 2, 2}, {2, 3}}},
		// Same-shape Mul writes fresh gradients with a forward multiply;
		// x·x and a factor with a gradient already take the adding path.
		{"MulSameShape", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(in[1])
			m := tensor.Mul(in[0], h)
			return tensor.Concat(0, m, tensor.Mul(in[0], in[0]), tensor.Scale(h, 2))
		}, [][]int{{2, 3}, {2, 3}}},
		{"MulLast", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Mul(in[0], in[1]) }, [][]int{{2, 3, 4}, {4}}},
		{"Scale", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Scale(in[0], -0.7) }, [][]int{{5}}},
		// Same-shape adds hand the gradient buffer on (passGrad/accumGrad):
		// x added to itself, through a reshape and a same-dtype cast, and an
		// intermediate used by two adds.
		// One intermediate consumed by ops that overwrite a fresh gradient
		// (Linear, MatMul, Permute, Concat) and by ops that add.
		{"FreshAndSharedGrads", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(in[0])                                  // [2,3,4]
			l := tensor.Linear(h, in[1], nil)                        // [2,3,4]
			m := tensor.MatMul(h, in[1], false, true)                // [2,3,4]
			p := tensor.Permute(tensor.Permute(h, 0, 2, 1), 0, 2, 1) // [2,3,4]
			c := tensor.Concat(1, h, l, h)                           // [2,9,4]
			s := tensor.Concat(1, m, p, tensor.Scale(h, 2))          // [2,9,4]
			return tensor.Mul(c, s)
		}, [][]int{{2, 3, 4}, {4, 4}}},
		{"AddSameShapeAliasing", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(in[0])
			s := tensor.Add(h, h)
			r := tensor.Reshape(tensor.Cast(s, tensor.F32), 3, 2)
			u := tensor.Add(r, tensor.Reshape(in[1], 3, 2))
			return tensor.Add(tensor.Scale(u, 0.5), tensor.Reshape(h, 3, 2))
		}, [][]int{{2, 3}, {6}}},
		// A same-shape add's operands hold its gradient jointly (shareGrad);
		// each later writer must take a private copy first: b's other
		// consumer adding with alpha ≠ 1 (own, then Axpy) and alpha 1
		// (one Binary add), a's other consumer overwriting/adding before
		// b's producer has read the gradient, and an add feeding a
		// checkpoint whose inner ops write into the handed-on buffer.
		{"SharedGradients", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(in[0])      // [2,3]
			a := tensor.GELU(in[1])      // [2,3]
			v := tensor.Softmax(a)       // adds into a's gradient once h is done
			u := tensor.Scale(h, 3)      // alpha-3 add into h, no longer shared
			r := tensor.Reshape(h, 3, 2) // alpha-1 hand-over into h while shared
			z := tensor.Add(a, h)
			return tensor.Concat(0, z, u, tensor.Reshape(r, 2, 3), v, tensor.Add(z, z))
		}, [][]int{{2, 3}, {2, 3}}},
		{"SharedGradientsScaled", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(in[0])
			a := tensor.GELU(in[1])
			u := tensor.Scale(h, 3) // alpha-3 add into h while shared
			z := tensor.Add(a, h)
			return tensor.Concat(0, z, u)
		}, [][]int{{2, 3}, {2, 3}}},
		{"SharedGradientsOverwriteOrAdd", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(in[0])
			a := tensor.GELU(in[1])
			l := tensor.Linear(h, in[2], nil) // gradOut into h while shared
			z := tensor.Add(a, h)
			return tensor.Concat(0, z, l)
		}, [][]int{{2, 3}, {2, 3}, {3, 3}}},
		{"SharedGradientsWrittenFirst", func(in []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(in[0])
			a := tensor.GELU(in[1])
			v := tensor.Softmax(a) // writes into a's gradient while h still shares it
			z := tensor.Add(a, h)
			return tensor.Concat(0, z, v)
		}, [][]int{{2, 3}, {2, 3}}},
		{"SharedGradientIntoCheckpoint", func(in []*tensor.Tensor) *tensor.Tensor {
			e := in[0].Engine()
			g := tensor.SiLU(in[1])
			c := e.Checkpoint(func(x []*tensor.Tensor) *tensor.Tensor {
				q := tensor.SiLU(x[0])
				return tensor.Add(q, tensor.GELU(q)) // q takes the handed-on buffer and adds into it
			}, in[0])
			return tensor.Add(g, c) // c and g share the gradient
		}, [][]int{{2, 3}, {2, 3}}},
		{"Permute", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Permute(in[0], 2, 0, 1) }, [][]int{{2, 3, 4}}},
		{"ConcatSlice", func(in []*tensor.Tensor) *tensor.Tensor {
			c := tensor.Concat(1, in[0], in[1])
			return tensor.Slice(c, 1, 1, 4)
		}, [][]int{{2, 2, 3}, {2, 3, 3}}},
		{"Pad2D", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Pad2D(in[0], 1, 0, 2, 1) }, [][]int{{2, 1, 3, 2}}},
		{"Upsample2x", func(in []*tensor.Tensor) *tensor.Tensor { return tensor.Upsample2x(in[0]) }, [][]int{{1, 2, 2, 3}}},
		{"UnaryChain", func(in []*tensor.Tensor) *tensor.Tensor {
			return tensor.QuickGELU(tensor.GELU(tensor.SiLU(in[0])))
		}, [][]int{{7}}},
		{"Checkpoint", func(in []*tensor.Tensor) *tensor.Tensor {
			e := in[0].Engine()
			return e.Checkpoint(func(x []*tensor.Tensor) *tensor.Tensor {
				return tensor.Linear(tensor.SiLU(x[0]), in[1], nil)
			}, in[0])
		}, [][]int{{3, 4}, {2, 4}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkGrad(t, tc.f, tc.shapes...) })
	}
}

func TestEmbeddingGradient(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	table := e.Persistent(tensor.F32, []float32{1, 2, 3, 4, 5, 6}, 3, 2)
	g := e.B.Alloc(tensor.F32, 6)
	e.B.Fill(g, 0)
	table.Param(g)
	y := tensor.Embedding(table, []int32{2, 0, 2})
	loss := tensor.MSELoss(y, e.Zeros(3, 2), nil)
	e.Backward(loss, 1)
	got := make([]float32, 6)
	e.B.Download(got, g)
	// d/dtable of mean(y²) = 2y/6 summed per row id: row 2 twice, row 0 once.
	want := []float32{2 * 1 / 6., 2 * 2 / 6., 0, 0, 2 * 2 * 5 / 6., 2 * 2 * 6 / 6.}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("embedding grad %v, want %v", got, want)
		}
	}
	if err := tensor.Catch(func() { tensor.Embedding(table, []int32{3}) }); err == nil {
		t.Error("id outside the table accepted")
	}
}

func TestShapeErrors(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	a, b := e.Zeros(2, 3), e.Zeros(4, 5)
	for name, f := range map[string]func(){
		"MatMul":  func() { tensor.MatMul(a, b, false, false) },
		"Linear":  func() { tensor.Linear(a, b, nil) },
		"Conv2D":  func() { tensor.Conv2D(e.Zeros(1, 3, 4, 4), e.Zeros(2, 2, 3, 3), nil, 1, 1) },
		"Add":     func() { tensor.Add(a, b) },
		"Reshape": func() { tensor.Reshape(a, 4, 2) },
		"Concat":  func() { tensor.Concat(1, a, e.Zeros(3, 3)) },
		"Attention": func() {
			tensor.Attention(e.Zeros(1, 2, 6), e.Zeros(1, 3, 6), e.Zeros(1, 3, 6), 4, false)
		},
	} {
		err := tensor.Catch(f)
		var oe *tensor.OpError
		if !errors.As(err, &oe) || oe.Op != name || !strings.Contains(err.Error(), "[") {
			t.Errorf("%s: error %v, want an OpError naming the op and the shapes", name, err)
		}
	}
	// Runtime errors are bugs: Catch must re-panic them.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Catch swallowed a runtime error")
			}
		}()
		tensor.Catch(func() { _ = []int{}[len(a.Shape())] })
	}()
}

func TestArenaAndCheckpointMemory(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	w := e.Persistent(tensor.F32, randVals(rand.New(rand.NewPCG(1, 1)), 16), 4, 4)
	g := e.B.Alloc(tensor.F32, 16)
	e.B.Fill(g, 0)
	w.Param(g)
	x := e.FromFloat32(randVals(rand.New(rand.NewPCG(2, 2)), 8), 2, 4)
	deep := func(in []*tensor.Tensor) *tensor.Tensor {
		h := in[0]
		for i := 0; i < 10; i++ {
			h = tensor.SiLU(tensor.Linear(h, w, nil))
		}
		return h
	}
	plain := deep([]*tensor.Tensor{x})
	livePlain := e.ArenaLive()
	e.EndStep()
	x = e.FromFloat32(randVals(rand.New(rand.NewPCG(2, 2)), 8), 2, 4)
	ck := e.Checkpoint(deep, x)
	liveCk := e.ArenaLive()
	if liveCk >= livePlain/4 {
		t.Errorf("checkpointed forward keeps %d allocations, plain %d", liveCk, livePlain)
	}
	_ = plain
	loss := tensor.MSELoss(ck, e.Zeros(2, 4), nil)
	e.Backward(loss, 1)
	e.EndStep()
	if e.ArenaLive() != 0 {
		t.Errorf("%d allocations live after EndStep", e.ArenaLive())
	}
}
