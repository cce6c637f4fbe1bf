package sample

import (
	"math"
	"testing"
)

// TestTorchGenerator checks the generator against values printed by
// PyTorch after torch.manual_seed(137): five raw draws, an 8-value normal_
// (the float64 path), one raw draw, a 16-value normal_ (the blocked float
// path), one raw draw. (Reference values as published with karpathy/llm.c's
// llmc/rand.h.)
func TestTorchGenerator(t *testing.T) {
	g := NewTorch(137)
	raw := []uint32{4053805790, 2173880614, 380293709, 1237255315, 2986595568}
	for i, want := range raw {
		if got := g.Uint32(); got != want {
			t.Fatalf("draw %d: %d, want %d", i, got, want)
		}
	}
	n8 := []float64{0.7947664260864258, 1.4369317293167114, -0.2292192131280899, 0.47556325793266296,
		-0.6334410905838013, -0.5791953802108765, -0.0925704762339592, -0.8659197092056274}
	got := make([]float32, 8)
	g.Normal(got)
	closeTo(t, "normal(8)", got, n8)
	if v := g.Uint32(); v != 2186503452 {
		t.Fatalf("draw after normal(8): %d, want 2186503452", v)
	}
	n16 := []float64{-1.2813878059387207, -2.646395683288574, -0.06569503247737885, 0.2180829495191574,
		-0.46536165475845337, -0.33108410239219666, 2.5485482215881348, 0.10425379872322083,
		0.8460659980773926, 0.9462448358535767, -0.2913765013217926, 0.34313806891441345,
		-1.1186704635620117, -0.18305328488349915, -2.3153159618377686, 0.3961987793445587}
	got = make([]float32, 16)
	g.Normal(got)
	closeTo(t, "normal(16)", got, n16)
	if v := g.Uint32(); v != 2756748748 {
		t.Fatalf("draw after normal(16): %d, want 2756748748", v)
	}
}

// TestTorchSeed0 checks torch.manual_seed(0): torch.rand(5) and
// torch.randn(5) as PyTorch prints them (4 decimals).
func TestTorchSeed0(t *testing.T) {
	g := NewTorch(0)
	want := []float64{0.4963, 0.7682, 0.0885, 0.1320, 0.3074}
	for i, w := range want {
		if v := g.Float32(); math.Abs(float64(v)-w) > 5e-5 {
			t.Errorf("rand[%d] = %.5f, want %.4f", i, v, w)
		}
	}
	g = NewTorch(0)
	got := make([]float32, 5)
	g.Normal(got)
	for i, w := range []float64{1.5410, -0.2934, -2.1788, 0.5684, -1.0845} {
		if math.Abs(float64(got[i])-w) > 5e-5 {
			t.Errorf("randn[%d] = %.5f, want %.4f", i, got[i], w)
		}
	}
}

// TestTorchTail checks the re-drawn last block of a draw whose length is
// not a multiple of 16: the first 16 values equal a 16-value draw, and the
// stream moves on by n+16 uniforms.
func TestTorchTail(t *testing.T) {
	a, b := NewTorch(7), NewTorch(7)
	x := make([]float32, 20)
	a.Normal(x)
	y := make([]float32, 16)
	b.Normal(y)
	for i := range 4 {
		if x[i] != y[i] {
			t.Fatalf("value %d: %g vs %g", i, x[i], y[i])
		}
	}
	for range 20 { // b has used 16 uniforms; a used 20 + 16
		b.Uint32()
	}
	if a.Uint32() != b.Uint32() {
		t.Fatal("stream position after a 20-value draw is not 36 uniforms on")
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("value %d is %g", i, v)
		}
	}
}

func closeTo(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); d > 1e-7*math.Max(1, math.Abs(w)) {
			t.Errorf("%s[%d] = %.9g, want %.9g", what, i, got[i], w)
		}
	}
}
