package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// randMat returns n random values in [-1, 1) with no zeros.
func randMat(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		v := rng.Float32()*2 - 1
		if v == 0 {
			v = 0.5
		}
		s[i] = v
	}
	return s
}

// refGemm is the float64 triple loop. It also returns, per element of C, the
// scale |alpha|·Σ|a·b| + |beta·c| against which the float32 error is judged.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, scale []float64) {
	want = make([]float64, m*n)
	scale = make([]float64, m*n)
	var wg sync.WaitGroup
	nw := runtime.GOMAXPROCS(0)
	for w := 0; w < nw; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < m; i += nw {
				for j := 0; j < n; j++ {
					var s, sa float64
					for p := 0; p < k; p++ {
						var av, bv float32
						if transA {
							av = a[p*lda+i]
						} else {
							av = a[i*lda+p]
						}
						if transB {
							bv = b[j*ldb+p]
						} else {
							bv = b[p*ldb+j]
						}
						s += float64(av) * float64(bv)
						sa += math.Abs(float64(av) * float64(bv))
					}
					w := float64(alpha) * s
					sc := math.Abs(float64(alpha)) * sa
					if beta != 0 {
						w += float64(beta) * float64(c[i*ldc+j])
						sc += math.Abs(float64(beta) * float64(c[i*ldc+j]))
					}
					want[i*n+j] = w
					scale[i*n+j] = sc
				}
			}
		}()
	}
	wg.Wait()
	return want, scale
}

// tolerance for float32 accumulation over k terms, relative to the scale.
func tolerance(k int) float64 { return 1e-6*math.Sqrt(float64(k)) + 1e-6 }

// checkC compares got with want element by element, relative to scale, and
// checks that the padding columns n…ldc-1 still hold pad.
func checkC(t *testing.T, what string, m, n, k int, got []float32, ldc int, want, scale []float64, pad float32) {
	t.Helper()
	tol := tolerance(k)
	worst, wi, wj := 0.0, -1, -1
	var num, den float64
	for i := 0; i < m; i++ {
		for j := 0; j < ldc; j++ {
			g := got[i*ldc+j]
			if j >= n {
				if g != pad && !(math.IsNaN(float64(g)) && math.IsNaN(float64(pad))) {
					t.Fatalf("%s: C[%d][%d] in the ldc padding changed to %v", what, i, j, g)
				}
				continue
			}
			w := want[i*n+j]
			if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
				t.Fatalf("%s: C[%d][%d] = %v, want %v", what, i, j, g, w)
			}
			d := math.Abs(float64(g) - w)
			num += d * d
			den += w * w
			e := d / max(scale[i*n+j], 1e-30)
			if e > worst {
				worst, wi, wj = e, i, j
			}
		}
	}
	if worst > tol {
		t.Fatalf("%s: worst relative error %.3g > %.3g at C[%d][%d]: got %v want %v (relative L2 %.3g)",
			what, worst, tol, wi, wj, got[wi*ldc+wj], want[wi*n+wj], math.Sqrt(num/max(den, 1e-300)))
	}
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	padA, padB     int // extra leading-dimension slack
	padC           int
}

func (c gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_%dx%dx%d_a%g_b%g_ld+%d,%d,%d", t(c.transA), t(c.transB), c.m, c.n, c.k, c.alpha, c.beta, c.padA, c.padB, c.padC)
}

// runCase runs one case through gemmParallel with kernel kern and nt
// workers and checks the result, the NaN isolation and the inputs.
func runCase(t *testing.T, rng *rand.Rand, kern *kernel, nt int, tc gemmCase) {
	t.Helper()
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc := ac+tc.padA, bc+tc.padB, tc.n+tc.padC
	a := randMat(rng, max(ar*lda, 1))
	b := randMat(rng, max(br*ldb, 1))
	c := randMat(rng, max(tc.m*ldc, 1))
	const pad = float32(12345)
	for i := 0; i < tc.m; i++ {
		for j := tc.n; j < ldc; j++ {
			c[i*ldc+j] = pad
		}
	}
	if tc.beta == 0 {
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				c[i*ldc+j] = float32(math.NaN())
			}
		}
	}
	a0, b0 := slices.Clone(a), slices.Clone(b)
	want, scale := refGemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)

	saved := active
	active = kern
	SetThreads(nt)
	Gemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	active = saved
	SetThreads(0)

	what := fmt.Sprintf("%s/%d threads/%v", kern.name, nt, tc)
	if !slices.Equal(a, a0) {
		t.Fatalf("%s: A was modified", what)
	}
	if !slices.Equal(b, b0) {
		t.Fatalf("%s: B was modified", what)
	}
	checkC(t, what, tc.m, tc.n, tc.k, c, ldc, want, scale, pad)
}

var smallShapes = [][3]int{
	{1, 1, 1}, {7, 13, 5}, {13, 7, 5}, {1, 1, 17}, {2, 3, 0}, {1, 64, 3}, {64, 1, 3},
	{14, 32, 8}, {15, 33, 9}, {31, 37, 41}, {6, 16, 300}, {97, 101, 103}, {29, 113, 257},
}

func allTrans() [][2]bool {
	return [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}}
}

func TestGemmSmall(t *testing.T) {
	for _, kern := range kernels() {
		t.Run(kern.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			for _, s := range smallShapes {
				for _, tr := range allTrans() {
					for _, ab := range [][2]float32{{1, 0}, {1, 1}, {-1.5, 0.75}, {0.5, 0}} {
						tc := gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: ab[0], beta: ab[1]}
						if ab[0] == -1.5 {
							tc.padA, tc.padB, tc.padC = 3, 5, 7
						}
						runCase(t, rng, kern, 1, tc)
					}
				}
			}
		})
	}
}

// TestGemmBlockBoundaries shrinks the blocking so that small shapes cross
// several kc, mc and nc boundaries, and uses 1, 2 and 3 workers.
func TestGemmBlockBoundaries(t *testing.T) {
	for _, kern := range kernels() {
		t.Run(kern.name, func(t *testing.T) {
			saved := [4]int{kcBlock, mcBlock, ncBlock, bBlockBytes}
			defer func() { kcBlock, mcBlock, ncBlock, bBlockBytes = saved[0], saved[1], saved[2], saved[3] }()
			// ncBlock bounds nc for small k, bBlockBytes for the larger k.
			kcBlock, mcBlock, ncBlock, bBlockBytes = 16, 2*kern.mr+1, 3*kern.nr, 4*40*2*kern.nr
			rng := rand.New(rand.NewPCG(3, 4))
			for _, s := range [][3]int{{101, 103, 67}, {61, 200, 33}, {200, 61, 48}, {5, 300, 17}, {300, 5, 16}} {
				for _, tr := range allTrans() {
					for _, nt := range []int{1, 2, 3} {
						for _, beta := range []float32{0, 1, -0.5} {
							tc := gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: 0.75, beta: beta, padA: 1, padB: 2, padC: 3}
							runCase(t, rng, kern, nt, tc)
						}
					}
				}
			}
		})
	}
}

func TestGemmMedium(t *testing.T) {
	for _, kern := range kernels() {
		t.Run(kern.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			// {2000, 100, 8}: row split with few K rows (a transposed A is then
			// shorter than r0*lda); {8, 2000, 100}: column split.
			for _, s := range [][3]int{{257, 383, 521}, {500, 40, 700}, {33, 700, 300}, {2000, 100, 8}, {8, 2000, 100}} {
				for _, tr := range allTrans() {
					tc := gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: 1.25, beta: 0}
					runCase(t, rng, kern, 2, tc)
				}
			}
		})
	}
}

// TestGemmLarge is the 4096×2880×320 case from the issue, for every kernel,
// against one float64 reference.
func TestGemmLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large GEMM skipped in -short mode")
	}
	const m, n, k = 4096, 2880, 320
	rng := rand.New(rand.NewPCG(7, 8))
	a, b := randMat(rng, m*k), randMat(rng, k*n)
	a0, b0 := slices.Clone(a), slices.Clone(b)
	want, scale := refGemm(false, false, m, n, k, 1, a, k, b, n, 0, nil, n)
	for _, kern := range kernels() {
		t.Run(kern.name, func(t *testing.T) {
			c := make([]float32, m*n)
			for i := range c {
				c[i] = float32(math.NaN())
			}
			saved := active
			active = kern
			Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
			active = saved
			if !slices.Equal(a, a0) || !slices.Equal(b, b0) {
				t.Fatalf("%s: inputs were modified", kern.name)
			}
			checkC(t, kern.name+"/4096x2880x320", m, n, k, c, n, want, scale, 0)
		})
	}
}

func TestGemmBatched(t *testing.T) {
	const m, n, k, batch = 9, 11, 7, 13
	for _, kern := range kernels() {
		t.Run(kern.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 10))
			for _, tr := range allTrans() {
				sa, sb, sc := m*k+3, k*n+5, m*n+2
				a, b := randMat(rng, batch*sa), randMat(rng, batch*sb)
				c := randMat(rng, batch*sc)
				for i := range c {
					c[i] = float32(math.NaN())
				}
				lda, ldb := k, n
				if tr[0] {
					lda = m
				}
				if tr[1] {
					ldb = k
				}
				saved := active
				active = kern
				GemmBatched(tr[0], tr[1], m, n, k, 2, a, lda, sa, b, ldb, sb, 0, c, n, sc, batch)
				active = saved
				for i := 0; i < batch; i++ {
					want, scale := refGemm(tr[0], tr[1], m, n, k, 2, a[i*sa:], lda, b[i*sb:], ldb, 0, nil, n)
					checkC(t, fmt.Sprintf("%s/batch %d/%v", kern.name, i, tr), m, n, k, c[i*sc:], n, want, scale, 0)
					for j := i*sc + m*n; j < (i+1)*sc; j++ {
						if !math.IsNaN(float64(c[j])) {
							t.Fatalf("batch gap C[%d] written: %v", j, c[j])
						}
					}
				}
			}
		})
	}
}

func TestAlphaZeroAndKZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	a := randMat(rng, 12)
	a[3] = float32(math.NaN()) // must not reach C when alpha == 0
	b := randMat(rng, 12)
	for _, beta := range []float32{0, 1, 2} {
		c := randMat(rng, 9)
		c0 := slices.Clone(c)
		Gemm(false, false, 3, 3, 4, 0, a, 4, b, 3, beta, c, 3)
		Gemm(false, false, 3, 3, 0, 1, nil, 1, nil, 3, 1, c, 3)
		for i := range c {
			if c[i] != beta*c0[i] {
				t.Fatalf("alpha=0 beta=%g: C[%d] = %v, want %v", beta, i, c[i], beta*c0[i])
			}
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func()
		want string
	}{
		{"short A", func() {
			Gemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}, "A (2×2, ld 2) needs 4"},
		{"small ldb", func() {
			Gemm(false, true, 2, 2, 3, 1, make([]float32, 6), 3, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		}, "ldB = 2 < 3"},
		{"short C", func() {
			Gemm(true, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		}, "C (2×2, ld 2) needs 4"},
		{"negative", func() { Gemm(false, false, -1, 2, 2, 1, nil, 2, nil, 2, 0, nil, 2) }, "negative dimension"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tc.want) {
					t.Fatalf("panic = %v, want one containing %q", r, tc.want)
				}
			}()
			tc.call()
		})
	}
}

// TestNoasmEnv checks that LOCO_NOASM=1 selects the pure-Go kernel. Run
// without the variable, it re-runs itself in a child process with it set.
func TestNoasmEnv(t *testing.T) {
	if noasmEnv() {
		if Kernel() != "generic" || len(kernels()) != 1 {
			t.Fatalf("LOCO_NOASM=1 but Kernel() = %q, %d kernels", Kernel(), len(kernels()))
		}
		fmt.Println("noasm-kernel:", Kernel())
		return
	}
	if testing.Short() {
		t.Skip("child process skipped in -short mode")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoasmEnv$", "-test.v")
	cmd.Env = append(os.Environ(), "LOCO_NOASM=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "noasm-kernel: generic") {
		t.Fatalf("child with LOCO_NOASM=1: %v\n%s", err, out)
	}
	t.Logf("default kernel here: %s", Kernel())
}

// TestGemmAPaths runs the small and block-crossing shapes with A forced
// through each path: always packed, and read in place (gemmDirectA)
// wherever a full row tile exists, on every kernel that has the in-place
// variants.
func TestGemmAPaths(t *testing.T) {
	saved := [5]int{kcBlock, mcBlock, ncBlock, bBlockBytes, directMaxBBytes}
	defer func() {
		kcBlock, mcBlock, ncBlock, bBlockBytes, directMaxBBytes = saved[0], saved[1], saved[2], saved[3], saved[4]
	}()
	for _, kern := range kernels() {
		for _, limit := range []int{0, 1 << 40} {
			name := fmt.Sprintf("%s/direct=%v", kern.name, limit > 0)
			t.Run(name, func(t *testing.T) {
				if limit > 0 && kern.fnRowsA == nil {
					t.Skip("kernel has no in-place A variant")
				}
				directMaxBBytes = limit
				rng := rand.New(rand.NewPCG(11, 12))
				shapes := append([][3]int{{14, 64, 4}, {28, 77, 8}, {64, 256, 4}, {128, 6, 1152}, {43, 40, 300}}, smallShapes...)
				for _, s := range shapes {
					for _, tr := range allTrans() {
						for _, ab := range [][2]float32{{1, 0}, {-1.5, 0.75}} {
							tc := gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: ab[0], beta: ab[1], padA: 3, padB: 1, padC: 2}
							runCase(t, rng, kern, 1, tc)
						}
					}
				}
				kcBlock, mcBlock, ncBlock, bBlockBytes = 16, 2*kern.mr+1, 3*kern.nr, 4*40*2*kern.nr
				defer func() { kcBlock, mcBlock, ncBlock, bBlockBytes = saved[0], saved[1], saved[2], saved[3] }()
				for _, s := range [][3]int{{101, 103, 67}, {61, 200, 33}, {300, 5, 16}} {
					for _, tr := range allTrans() {
						for _, nt := range []int{1, 2} {
							for _, beta := range []float32{0, -0.5} {
								tc := gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: 0.75, beta: beta, padA: 1, padB: 2, padC: 3}
								runCase(t, rng, kern, nt, tc)
							}
						}
					}
				}
			})
		}
	}
}

// TestDirectAChoice checks when gemmSerial reads A in place.
func TestDirectAChoice(t *testing.T) {
	for _, kern := range kernels() {
		if kern.fnRowsA == nil {
			if directA(kern, 1000, 256, 64) {
				t.Errorf("%s: directA true for a kernel without in-place variants", kern.name)
			}
			continue
		}
		if !directA(kern, 128, 256, 32) {
			t.Errorf("%s: a 128-row product with one 256×32 B̃ slice should read A in place", kern.name)
		}
		if directA(kern, kern.mr-1, 64, 32) {
			t.Errorf("%s: fewer rows than one tile should pack A", kern.name)
		}
		if directA(kern, 1024, 256, 1024) {
			t.Errorf("%s: a 1 MiB B̃ slice should pack A (1024³ keeps the packed path)", kern.name)
		}
	}
}

// TestGemmDot runs products with a transposed B through gemmDot (forced
// for every m) and with it turned off, on every kernel that has a dot
// kernel: lengths around the 16-float step, rows not a multiple of 4.
func TestGemmDot(t *testing.T) {
	saved := dotMaxM
	defer func() { dotMaxM = saved }()
	for _, kern := range kernels() {
		for _, limit := range []int{0, 1 << 20} {
			t.Run(fmt.Sprintf("%s/dot=%v", kern.name, limit > 0), func(t *testing.T) {
				if limit > 0 && kern.dot4 == nil {
					t.Skip("kernel has no dot kernel")
				}
				dotMaxM = limit
				rng := rand.New(rand.NewPCG(13, 14))
				for _, s := range [][3]int{{4, 64, 256}, {4, 64, 77}, {1, 5, 1}, {3, 7, 15}, {5, 9, 16}, {8, 24, 17}, {16, 6, 33}, {13, 40, 100}, {2, 1, 31}} {
					for _, transA := range []bool{false, true} {
						for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {-1.5, 0.75}} {
							tc := gemmCase{transA: transA, transB: true, m: s[0], n: s[1], k: s[2], alpha: ab[0], beta: ab[1], padA: 2, padB: 3, padC: 1}
							runCase(t, rng, kern, 1, tc)
							runCase(t, rng, kern, 2, tc)
						}
					}
				}
			})
		}
	}
}
