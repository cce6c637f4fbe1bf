package merge

import (
	"fmt"
	"math/rand/v2"

	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// SVD is a truncated singular value decomposition M ≈ P·diag(S)·Qt with
// P [m, q], S descending, Qt [q, n]. N is min(m, n): the length of M's full
// list of singular values, of which the ones not in S are zero (or were not
// computed, for a randomized decomposition).
type SVD struct {
	P  *mat.Dense
	S  []float64
	Qt *mat.Dense
	N  int
}

// Padded returns S followed by zeros up to N values: the full spectrum
// when M's rank is at most len(S).
func (s *SVD) Padded() []float64 {
	out := make([]float64, s.N)
	copy(out, s.S)
	return out
}

// denseSVD decomposes the m×n matrix a (row-major) with gonum's thin SVD.
func denseSVD(a []float64, m, n int) (*SVD, error) {
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(m, n, a), mat.SVDThin) {
		return nil, fmt.Errorf("SVD of a %d×%d matrix did not converge", m, n)
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	return &SVD{P: &u, S: s, Qt: mat.DenseCopyOf(v.T()), N: min(m, n)}, nil
}

// factoredSVD decomposes the product A·B (A [m, q], B [q, n]) without
// forming it: A = Qa·Ra, Bᵀ = Qb·Rb, Ra·Rbᵀ = X·Σ·Yᵀ, so A·B = (Qa·X)·Σ·(Qb·Y)ᵀ.
// Exact in exact arithmetic and O((m+n)·q²) instead of O(m·n·min(m,n)).
// When q ≥ min(m, n) the product is formed and decomposed directly.
func factoredSVD(a, b *mat.Dense) (*SVD, error) {
	m, q := a.Dims()
	q2, n := b.Dims()
	if q != q2 {
		panic("factoredSVD: inner sizes differ")
	}
	if q >= min(m, n) {
		var p mat.Dense
		p.Mul(a, b)
		return denseSVD(p.RawMatrix().Data, m, n)
	}
	qaT, raT := thinQR(a)
	qbT, rbT := thinQR(mat.DenseCopyOf(b.T()))
	var c mat.Dense
	c.Mul(raT, rbT.T())
	small, err := denseSVD(mat.DenseCopyOf(&c).RawMatrix().Data, q, q)
	if err != nil {
		return nil, err
	}
	var p, qt mat.Dense
	p.Mul(qaT, small.P)
	qt.Mul(small.Qt, qbT.T())
	return &SVD{P: &p, S: small.S, Qt: &qt, N: min(m, n)}, nil
}

// randomizedSVD approximates the top singular triplets of the m×n matrix a
// (row-major) by a randomized range finder with power iterations (Halko,
// Martinsson, Tropp 2011): exact when rank(a) ≤ l, and close to the optimum
// otherwise. The seed makes it deterministic.
func randomizedSVD(a []float64, m, n, k int, seed uint64) (*SVD, error) {
	l := min(k+12, m, n)
	if l >= min(m, n)/2 {
		return denseSVD(a, m, n)
	}
	A := mat.NewDense(m, n, a)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	omega := mat.NewDense(n, l, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < l; j++ {
			omega.Set(i, j, rng.NormFloat64())
		}
	}
	var y mat.Dense
	y.Mul(A, omega)
	orth := func(x *mat.Dense) *mat.Dense { q, _ := thinQR(x); return q }
	q := orth(&y)
	for it := 0; it < 3; it++ {
		var z mat.Dense
		z.Mul(A.T(), q)
		zq := orth(&z)
		var y2 mat.Dense
		y2.Mul(A, zq)
		q = orth(&y2)
	}
	var b mat.Dense
	b.Mul(q.T(), A) // [l, n]
	s, err := factoredSVD(q, &b)
	if err != nil {
		return nil, err
	}
	s.N = min(m, n)
	return s, nil
}

// thinQR returns Q [m, q] with orthonormal columns and upper-triangular R
// [q, q] with x = Q·R, for x [m, q], m ≥ q (Householder, LAPACK's
// geqrf/orgqr), without ever forming the m×m Q.
func thinQR(x *mat.Dense) (*mat.Dense, *mat.Dense) {
	m, q := x.Dims()
	a := mat.DenseCopyOf(x)
	g := a.RawMatrix()
	tau := make([]float64, q)
	work := make([]float64, 1)
	lapack64.Geqrf(g, tau, work, -1)
	work = make([]float64, max(int(work[0]), m))
	lapack64.Geqrf(g, tau, work, len(work))
	r := mat.NewDense(q, q, nil)
	for i := 0; i < q; i++ {
		for j := i; j < q; j++ {
			r.Set(i, j, a.At(i, j))
		}
	}
	lapack64.Orgqr(g, tau, work[:1], -1)
	if n := int(work[0]); n > len(work) {
		work = make([]float64, n)
	}
	lapack64.Orgqr(g, tau, work, len(work))
	return a, r
}

// f64 widens float32 values.
func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
