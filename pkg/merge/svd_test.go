package merge

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestRandomizedSVDRealSize checks the range finder that `extract` uses on
// a layer of SD 1.5's size (a 3×3 conv of 320 channels: 320 × 2880) whose
// difference is a decaying spectrum plus noise, as a fine-tune's is: the
// top singular values match the exact SVD's, and the rank-k truncation is
// within a hair of the optimal (Eckart–Young) error. (The extraction tests
// use tiny layers, where the randomized path falls back to the dense SVD.)
func TestRandomizedSVDRealSize(t *testing.T) {
	const m, n, k = 320, 2880, 16
	r := rand.New(rand.NewPCG(4, 2))
	// A = U·diag(s)·Vᵀ with s_i = 0.9^i over 40 directions, plus noise 1e-3.
	const rank = 40
	u := mat.NewDense(m, rank, nil)
	v := mat.NewDense(n, rank, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < rank; j++ {
			u.Set(i, j, r.NormFloat64()/math.Sqrt(m))
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < rank; j++ {
			v.Set(i, j, r.NormFloat64()/math.Sqrt(n)*math.Pow(0.9, float64(j)))
		}
	}
	var a mat.Dense
	a.Mul(u, v.T())
	data := a.RawMatrix().Data
	for i := range data {
		data[i] += 1e-3 * r.NormFloat64() / math.Sqrt(n)
	}
	exact, err := denseSVD(append([]float64(nil), data...), m, n)
	if err != nil {
		t.Fatal(err)
	}
	approx, err := randomizedSVD(append([]float64(nil), data...), m, n, k, 7)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < k; i++ {
		if d := math.Abs(approx.S[i]-exact.S[i]) / exact.S[i]; d > 1e-6 {
			t.Errorf("singular value %d: %g, exact %g (relative %.2g)", i, approx.S[i], exact.S[i], d)
		}
	}
	// ‖A − A_k‖_F: optimal is sqrt(Σ_{i≥k} s_i²).
	var opt float64
	for _, s := range exact.S[k:] {
		opt += s * s
	}
	opt = math.Sqrt(opt)
	recon := mat.NewDense(m, n, nil)
	for i := 0; i < k; i++ {
		var outer mat.Dense
		outer.Outer(approx.S[i], approx.P.ColView(i), approx.Qt.RowView(i))
		recon.Add(recon, &outer)
	}
	recon.Sub(mat.NewDense(m, n, data), recon)
	got := mat.Norm(recon, 2)
	if got > opt*(1+1e-3) {
		t.Errorf("rank-%d error %g, optimal %g", k, got, opt)
	}
	t.Logf("top singular values match to 1e-6; rank-%d error %.6g vs optimal %.6g", k, got, opt)
}
