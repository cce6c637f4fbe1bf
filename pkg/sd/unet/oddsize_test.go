package unet

import (
	"math"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/sd/sdtest"
	"loco/pkg/tensor"
)

// nearest is PyTorch's F.interpolate(mode="nearest") of x [C,H,W] to
// [C,oh,ow]: source index floor(dst·(in/out)) with the scale in float32,
// clamped to in−1.
func nearest(x []float32, c, h, w, oh, ow int) []float32 {
	sh, sw := float32(h)/float32(oh), float32(w)/float32(ow)
	out := make([]float32, c*oh*ow)
	for k := 0; k < c; k++ {
		for i := 0; i < oh; i++ {
			si := min(int(float32(i)*sh), h-1)
			for j := 0; j < ow; j++ {
				sj := min(int(float32(j)*sw), w-1)
				out[(k*oh+i)*ow+j] = x[(k*h+si)*w+sj]
			}
		}
	}
	return out
}

// TestUpsampleToSkipSize: the up blocks' nearest 2× upsampling cropped to
// an odd skip size is exactly PyTorch's nearest interpolation to that size
// (what diffusers and sd-scripts do), for every size a UNet meets.
func TestUpsampleToSkipSize(t *testing.T) {
	e := tensor.NewEngine(cpu.New())
	for h := 1; h <= 24; h++ {
		for _, w := range []int{1, 2, 5, 8, 13} {
			x := sdtest.Randn(uint64(h*100+w), 2*h*w)
			for _, o := range [][2]int{{2 * h, 2 * w}, {2*h - 1, 2 * w}, {2 * h, 2*w - 1}, {2*h - 1, 2*w - 1}} {
				if o[0] < 1 || o[1] < 1 {
					continue
				}
				u := upsampleTo(e.FromFloat32(x, 1, 2, h, w), o)
				got, want := u.Float32s(), nearest(x, 2, h, w, o[0], o[1])
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%dx%d to %dx%d: element %d is %g, interpolate gives %g", h, w, o[0], o[1], i, got[i], want[i])
					}
				}
				e.EndStep()
			}
		}
	}
}

// TestForwardOddLatents runs the golden tiny UNet on latents that are not
// multiples of 8 (sample images of 8-px multiples, as kohya allows): the
// output has the input's size, is finite, and the backward pass runs.
func TestForwardOddLatents(t *testing.T) {
	golden.ForEach(t, "unet_forward", func(t *testing.T, c *golden.Case) {
		e := tensor.NewEngine(cpu.New())
		u := loadCase(t, c, e)
		_, ts, ctx := inputs(t, c, e)
		xs := c.Shape("x")
		for _, hw := range [][2]int{{9, 13}, {7, 5}, {17, 24}} {
			for _, ck := range []bool{false, true} {
				u.Checkpoint = ck
				x := e.FromFloat32(sdtest.Randn(uint64(hw[0]), xs[0]*xs[1]*hw[0]*hw[1]), xs[0], xs[1], hw[0], hw[1]).RequireGrad()
				out := u.Forward(x, ts, ctx)
				if s := out.Shape(); s[2] != hw[0] || s[3] != hw[1] {
					t.Fatalf("latents %v: output %v", x.Shape(), s)
				}
				for _, v := range out.Float32s() {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("latents %v: non-finite output", x.Shape())
					}
				}
				e.Backward(tensor.MSELoss(out, e.Zeros(out.Shape()...), nil), 1)
				g := make([]float32, x.Len())
				e.B.Download(g, x.Grad())
				var ss float64
				for _, v := range g {
					ss += float64(v) * float64(v)
				}
				if !(ss > 0) || math.IsInf(ss, 0) {
					t.Fatalf("latents %v, checkpointing %v: input gradient norm² %g", x.Shape(), ck, ss)
				}
				e.EndStep()
			}
		}
	})
}
