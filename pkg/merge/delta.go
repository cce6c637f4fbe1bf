package merge

import (
	"fmt"
	"runtime"
	"slices"
	"sync"

	"loco/pkg/lycoris"
)

// Scale is a module's alpha/rank, with alpha = rank (scale 1) when the file
// has no alpha or alpha 0 (lycoris.Network.Load's rule).
func Scale(m *lycoris.FileModule) float64 {
	if !m.HasAlpha || m.Alpha == 0 {
		return 1
	}
	return float64(m.Alpha) / float64(m.Rank())
}

// Factors are a module's two matrices in 2-D form: ΔW = Up·Down with Up
// [Out, R] and Down [R, Cols] (Cols = in·kh·kw), row-major. A Tucker module
// is folded first (Down[i, c,h,w] = Σ_j Mid[i,j,h,w]·D[j,c]), which is exact.
type Factors struct {
	Out, R, Cols int
	Up, Down     []float32
	Kernel       int // kernel of Down (1 for Linear and 1×1)

	// LoHa (hada_*): ΔW = (W1a·W1b) ⊙ (W2a·W2b), W1a/W2a [Out, R],
	// W1b/W2b [R, Cols]; Up and Down are nil. Only apply uses these: the
	// factored operations (resize, combine) refuse LoHa.
	LoHa               bool
	W1a, W1b, W2a, W2b []float32
}

// FactorsFor checks a module's shapes against the layer it changes and
// returns its 2-D factors. The error names the module and both shapes.
func FactorsFor(m *lycoris.FileModule, l *Layer) (*Factors, error) {
	r := m.Rank()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("module %s (layer %s %v): %s", m.Name, l.Key, l.Shape, fmt.Sprintf(format, args...))
	}
	if m.IsLoHa() {
		if !slices.Equal(m.W1aShape, []int{l.Out(), r}) || !slices.Equal(m.W1bShape, []int{r, l.Cols()}) {
			return nil, bad("LoHa hada_w1_a %v, hada_w1_b %v, want [%d, %d] and [%d, %d]", m.W1aShape, m.W1bShape, l.Out(), r, r, l.Cols())
		}
		return &Factors{Out: l.Out(), R: r, Cols: l.Cols(), Kernel: l.Kernel, LoHa: true,
			W1a: m.W1a, W1b: m.W1b, W2a: m.W2a, W2b: m.W2b}, nil
	}
	if numel(m.UpShape) != l.Out()*r || m.UpShape[0] != l.Out() {
		return nil, bad("lora_up has shape %v, want [%d, %d%s]", m.UpShape, l.Out(), r, convSuffix(l, "1, 1"))
	}
	if l.Conv != (len(m.DownShape) == 4) {
		return nil, bad("lora_down has shape %v: a %s layer needs %d-D factors", m.DownShape, kind(l), map[bool]int{true: 4, false: 2}[l.Conv])
	}
	f := &Factors{Out: l.Out(), R: r, Cols: l.Cols(), Up: m.Up, Kernel: 1}
	if m.Mid != nil {
		if !l.Conv || l.Kernel == 1 {
			return nil, bad("lora_mid (Tucker) on a %s layer", kind(l))
		}
		if !slices.Equal(m.DownShape, []int{r, l.In(), 1, 1}) || !slices.Equal(m.MidShape, []int{r, r, l.Kernel, l.Kernel}) {
			return nil, bad("Tucker lora_down %v, lora_mid %v, want [%d, %d, 1, 1] and [%d, %d, %d, %d]",
				m.DownShape, m.MidShape, r, l.In(), r, r, l.Kernel, l.Kernel)
		}
		f.Down = FoldTucker(m.Down, m.Mid, r, l.In(), l.Kernel)
		f.Kernel = l.Kernel
		return f, nil
	}
	if numel(m.DownShape) != r*l.Cols() || m.DownShape[1] != l.In() {
		if l.Conv && l.Kernel > 1 && len(m.DownShape) == 4 && m.DownShape[2] == 1 {
			return nil, bad("lora_down %v is 1×1 on a %d×%d layer and there is no lora_mid (kohya would broadcast it over the kernel)", m.DownShape, l.Kernel, l.Kernel)
		}
		return nil, bad("lora_down has shape %v, want [%d, %d%s]", m.DownShape, r, l.In(), convSuffix(l, fmt.Sprintf("%d, %d", l.Kernel, l.Kernel)))
	}
	f.Down, f.Kernel = m.Down, l.Kernel
	return f, nil
}

func kind(l *Layer) string {
	if !l.Conv {
		return "Linear"
	}
	return fmt.Sprintf("%d×%d conv", l.Kernel, l.Kernel)
}

func convSuffix(l *Layer, s string) string {
	if l.Conv {
		return ", " + s
	}
	return ""
}

// FoldTucker turns a Tucker module's 1×1 down [r, in] and k×k mid
// [r, r, k, k] into the equivalent k×k down [r, in, k, k]:
// D'[i,c,h,w] = Σ_j M[i,j,h,w]·D[j,c]. Accumulated in float64.
func FoldTucker(down, mid []float32, r, in, k int) []float32 {
	kk := k * k
	out := make([]float32, r*in*kk)
	acc := make([]float64, in*kk)
	for i := 0; i < r; i++ {
		clear(acc)
		for j := 0; j < r; j++ {
			for hw := 0; hw < kk; hw++ {
				mv := float64(mid[(i*r+j)*kk+hw])
				if mv == 0 {
					continue
				}
				d := down[j*in : (j+1)*in]
				for c, dv := range d {
					acc[c*kk+hw] += mv * float64(dv)
				}
			}
		}
		for x, v := range acc {
			out[i*in*kk+x] = float32(v)
		}
	}
	return out
}

// AddDelta adds coef·Up·Down to w ([Out, Cols], row-major): each element
// of Up·Down is accumulated in float64, multiplied by coef, rounded to
// float32 and added in float32 (merge.md A.2). Rows are split over the CPUs.
func (f *Factors) AddDelta(w []float32, coef float64) {
	parallelRows(f.Out, func(o0, o1 int) {
		acc := make([]float64, f.Cols)
		for o := o0; o < o1; o++ {
			f.row(o, acc)
			row := w[o*f.Cols : (o+1)*f.Cols]
			for c, v := range acc {
				row[c] += float32(coef * v)
			}
		}
	})
}

// Dense returns coef·Up·Down as a float64 [Out, Cols] matrix (row-major).
func (f *Factors) Dense(coef float64) []float64 {
	out := make([]float64, f.Out*f.Cols)
	parallelRows(f.Out, func(o0, o1 int) {
		for o := o0; o < o1; o++ {
			row := out[o*f.Cols : (o+1)*f.Cols]
			f.row(o, row)
			for c := range row {
				row[c] *= coef
			}
		}
	})
	return out
}

// row writes row o of Up·Down (LoHa: of the Hadamard product) into acc
// (len Cols) in float64.
func (f *Factors) row(o int, acc []float64) {
	if f.LoHa {
		f.lohaRow(o, acc)
		return
	}
	clear(acc)
	for j := 0; j < f.R; j++ {
		u := float64(f.Up[o*f.R+j])
		if u == 0 {
			continue
		}
		d := f.Down[j*f.Cols : (j+1)*f.Cols]
		for c, dv := range d {
			acc[c] += u * float64(dv)
		}
	}
}

// parallelRows runs fn over [0, n) split into contiguous ranges, one per CPU.
func parallelRows(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 || n < 16 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += step {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, min(n, lo+step))
	}
	wg.Wait()
}

// lohaRow writes row o of (W1a·W1b) ⊙ (W2a·W2b) into acc in float64.
func (f *Factors) lohaRow(o int, acc []float64) {
	p2 := make([]float64, f.Cols)
	clear(acc)
	for j := 0; j < f.R; j++ {
		a1, a2 := float64(f.W1a[o*f.R+j]), float64(f.W2a[o*f.R+j])
		b1, b2 := f.W1b[j*f.Cols:(j+1)*f.Cols], f.W2b[j*f.Cols:(j+1)*f.Cols]
		for c := range acc {
			acc[c] += a1 * float64(b1[c])
			p2[c] += a2 * float64(b2[c])
		}
	}
	for c := range acc {
		acc[c] *= p2[c]
	}
}
