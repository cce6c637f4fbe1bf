package profile

import (
	"bytes"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/tensor"
)

// TestProfileCountsAndPassesThrough runs a small computation through the
// wrapper: results equal the unwrapped backend's, and every op is counted.
func TestProfileCountsAndPassesThrough(t *testing.T) {
	p := New(cpu.New(), true)
	e := tensor.NewEngine(p)
	x := e.FromFloat32([]float32{1, -2, 3, -4, 5, -6}, 2, 3)
	w := e.FromFloat32([]float32{0.5, -1, 2, 1.5, 0.25, -0.75}, 2, 3)
	y := tensor.SiLU(tensor.Linear(x, w, nil))
	got := y.Float32s()

	e2 := tensor.NewEngine(cpu.New())
	x2 := e2.FromFloat32([]float32{1, -2, 3, -4, 5, -6}, 2, 3)
	w2 := e2.FromFloat32([]float32{0.5, -1, 2, 1.5, 0.25, -0.75}, 2, 3)
	want := tensor.SiLU(tensor.Linear(x2, w2, nil)).Float32s()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("wrapped result %v, want %v", got, want)
		}
	}
	var b bytes.Buffer
	p.Report(&b, 0)
	out := b.String()
	for _, k := range []string{"Gemm 2x2x3", "Unary silu", "all ops"} {
		if !strings.Contains(out, k) {
			t.Errorf("report lacks %q:\n%s", k, out)
		}
	}
	if p.stats["Gemm 2x2x3"].Calls != 1 || p.stats["Unary silu"].Calls != 1 {
		t.Errorf("counts: %+v %+v", p.stats["Gemm 2x2x3"], p.stats["Unary silu"])
	}
}
