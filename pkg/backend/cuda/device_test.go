package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"loco/pkg/backend/backendtest"
	"loco/pkg/backend/cpu"
	"loco/pkg/backend/cuda"
	"loco/pkg/golden"
	"loco/pkg/tensor"
)

var (
	devOnce sync.Once
	devBe   *cuda.Backend
	devErr  error
)

// device returns the shared CUDA backend, or skips the test when there is
// none. LOCO_REQUIRE_CUDA=1 turns the skip into a failure.
func device(t testing.TB) *cuda.Backend {
	t.Helper()
	devOnce.Do(func() {
		devBe, devErr = cuda.New(0)
		if devErr == nil {
			fmt.Fprintf(os.Stderr, "cuda: %s\n", devBe.Describe())
		}
	})
	if devErr != nil {
		if os.Getenv("LOCO_REQUIRE_CUDA") == "1" {
			t.Fatalf("LOCO_REQUIRE_CUDA=1 but no CUDA backend: %v", devErr)
		}
		t.Skipf("no CUDA device (set LOCO_REQUIRE_CUDA=1 to fail instead): %v", devErr)
	}
	return devBe
}

var dtypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16}

// TestConformance runs the shared conformance suite for every storage dtype.
func TestConformance(t *testing.T) {
	be := device(t)
	for _, dt := range dtypes {
		t.Run(dt.String(), func(t *testing.T) {
			backendtest.Run(t, be, backendtest.Options{DType: dt})
		})
	}
}

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// pair runs the same op on the CUDA and CPU backends from host inputs and
// compares one output by relative L2 error.
type pair struct {
	t   *testing.T
	gpu *cuda.Backend
	cpu tensor.Backend
	dt  tensor.DType
	rng *rand.Rand
}

// up uploads v to both backends (GPU in dt, CPU in F32, after rounding v
// through dt so that both see the same values).
func (p *pair) up(v []float32) (tensor.Storage, tensor.Storage) {
	g := p.gpu.Alloc(p.dt, len(v))
	p.gpu.Upload(g, v)
	r := make([]float32, len(v))
	p.gpu.Download(r, g)
	c := p.cpu.Alloc(tensor.F32, len(v))
	p.cpu.Upload(c, r)
	return g, c
}

// outs allocates NaN-filled outputs on both (GPU dtype dt unless f32).
func (p *pair) outs(n int, f32 bool) (tensor.Storage, tensor.Storage) {
	dt := p.dt
	if f32 {
		dt = tensor.F32
	}
	g := p.gpu.Alloc(dt, n)
	p.gpu.Fill(g, float32(math.NaN()))
	c := p.cpu.Alloc(tensor.F32, n)
	p.cpu.Fill(c, float32(math.NaN()))
	return g, c
}

func (p *pair) check(name string, g, c tensor.Storage, tol float64) {
	p.t.Helper()
	if err := p.gpu.Sync(); err != nil {
		p.t.Fatalf("%s: %v", name, err)
	}
	gv, cv := make([]float32, g.Len()), make([]float32, c.Len())
	p.gpu.Download(gv, g)
	p.cpu.Download(cv, c)
	e := golden.RelL2(gv, cv)
	if !(e <= tol) {
		worst, wi := 0.0, 0
		for i := range gv {
			if d := math.Abs(float64(gv[i] - cv[i])); d > worst || math.IsNaN(d) {
				worst, wi = d, i
				if math.IsNaN(d) {
					break
				}
			}
		}
		p.t.Errorf("%s %v: relative L2 %.3g > %.3g; worst [%d] got %g want %g", name, p.dt, e, tol, wi, gv[wi], cv[wi])
	} else {
		p.t.Logf("%s %v: relative L2 %.3g", name, p.dt, e)
	}
}

func tolFor(dt tensor.DType) float64 {
	switch dt {
	case tensor.F16:
		return 5e-3
	case tensor.BF16:
		return 3e-2
	}
	return 1e-5
}

// TestAgainstCPU compares a few composite ops with the CPU backend on
// fresh random inputs: GEMM in all four transpose cases, convolutions
// (3x3 pad 1, stride 2, 1x1) forward and backward, and attention at the
// SD head dims.
func TestAgainstCPU(t *testing.T) {
	gpu := device(t)
	for _, dt := range dtypes {
		t.Run(dt.String(), func(t *testing.T) {
			p := &pair{t: t, gpu: gpu, cpu: cpu.New(), dt: dt, rng: rand.New(rand.NewPCG(uint64(dt), 99))}
			tol := tolFor(dt)
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					M, N, K := 37, 53, 71
					gp := tensor.GemmParams{TransA: ta, TransB: tb, M: M, N: N, K: K, Batch: 3,
						StrideA: M * K, StrideB: K * N, StrideC: M * N, Alpha: 0.7, Beta: 0}
					ag, ac := p.up(randn(p.rng, 3*M*K))
					bg, bc := p.up(randn(p.rng, 3*K*N))
					cg, cc := p.outs(3*M*N, false)
					gpu.Gemm(cg, ag, bg, gp)
					p.cpu.Gemm(cc, ac, bc, gp)
					p.check(fmt.Sprintf("Gemm transA=%v transB=%v", ta, tb), cg, cc, tol)
				}
			}
			for _, cp := range []tensor.ConvParams{
				{N: 2, C: 5, H: 9, W: 11, K: 7, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
				{N: 2, C: 4, H: 10, W: 9, K: 6, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
				{N: 3, C: 8, H: 6, W: 6, K: 5, R: 1, S: 1, StrideH: 1, StrideW: 1},
			} {
				nx, nw, ny := cp.N*cp.C*cp.H*cp.W, cp.K*cp.C*cp.R*cp.S, cp.N*cp.K*cp.P()*cp.Q()
				xg, xc := p.up(randn(p.rng, nx))
				wg, wc := p.up(randn(p.rng, nw))
				bg, bc := p.up(randn(p.rng, cp.K))
				yg, yc := p.outs(ny, false)
				gpu.Conv2D(yg, xg, wg, bg, cp)
				p.cpu.Conv2D(yc, xc, wc, bc, cp)
				p.check(fmt.Sprintf("Conv2D %+v", cp), yg, yc, tol)
				dyg, dyc := p.up(randn(p.rng, ny))
				dxg, dxc := p.up(randn(p.rng, nx)) // backward adds into existing values
				gpu.Conv2DBackwardData(dxg, dyg, wg, cp)
				p.cpu.Conv2DBackwardData(dxc, dyc, wc, cp)
				p.check("Conv2DBackwardData", dxg, dxc, tol)
				dwg, dwc := p.up(randn(p.rng, nw))
				dbg, dbc := p.up(randn(p.rng, cp.K))
				gpu.Conv2DBackwardFilter(dwg, dbg, dyg, xg, cp)
				p.cpu.Conv2DBackwardFilter(dwc, dbc, dyc, xc, cp)
				p.check("Conv2DBackwardFilter dw", dwg, dwc, 2*tol)
				p.check("Conv2DBackwardFilter dbias", dbg, dbc, 2*tol)
			}
			for _, ap := range []tensor.AttnParams{
				{B: 2, H: 3, Tq: 70, Tk: 45, D: 40},
				{B: 1, H: 2, Tq: 33, Tk: 77, D: 80},
				{B: 1, H: 2, Tq: 40, Tk: 40, D: 160, Causal: true},
				{B: 2, H: 1, Tq: 19, Tk: 19, D: 64, Causal: true},
			} {
				ap.Scale = float32(1 / math.Sqrt(float64(ap.D)))
				nq, nk := ap.B*ap.Tq*ap.H*ap.D, ap.B*ap.Tk*ap.H*ap.D
				qg, qc := p.up(randn(p.rng, nq))
				kg, kc := p.up(randn(p.rng, nk))
				vg, vc := p.up(randn(p.rng, nk))
				og, oc := p.outs(nq, false)
				lg, lc := p.outs(ap.B*ap.H*ap.Tq, true)
				gpu.Attention(og, lg, qg, kg, vg, ap)
				p.cpu.Attention(oc, lc, qc, kc, vc, ap)
				p.check(fmt.Sprintf("Attention %+v", ap), og, oc, tol)
				p.check("Attention lse", lg, lc, 1e-5+tol/10)
				dog, doc := p.up(randn(p.rng, nq))
				dqg, dqc := p.up(randn(p.rng, nq))
				dkg, dkc := p.up(randn(p.rng, nk))
				dvg, dvc := p.up(randn(p.rng, nk))
				gpu.AttentionBackward(dqg, dkg, dvg, dog, qg, kg, vg, og, lg, ap)
				p.cpu.AttentionBackward(dqc, dkc, dvc, doc, qc, kc, vc, oc, lc, ap)
				p.check("AttentionBackward dq", dqg, dqc, 2*tol)
				p.check("AttentionBackward dk", dkg, dkc, 2*tol)
				p.check("AttentionBackward dv", dvg, dvc, 2*tol)
			}
		})
	}
}

// TestDeviceErrorsAreOpErrors checks a bad argument panics with an
// *tensor.OpError naming the op.
func TestDeviceErrorsAreOpErrors(t *testing.T) {
	be := device(t)
	x := be.Alloc(tensor.F32, 10)
	y := be.Alloc(tensor.F16, 10)
	defer be.Free(x)
	defer be.Free(y)
	err := tensor.Catch(func() { be.Unary(tensor.OpSiLU, y, x) })
	oe, ok := err.(*tensor.OpError)
	if !ok || oe.Op != "cuda.Unary" {
		t.Fatalf("mixed-dtype Unary gave %v, want an *OpError from cuda.Unary", err)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}
