package merge

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"loco/pkg/golden"
	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// goldenCase loads a golden case folder by name, skipping the test when the
// golden data is absent.
func goldenCase(t testing.TB, name string) *golden.Case {
	t.Helper()
	root, ok := golden.Root()
	if !ok {
		t.Skip("no ../shared/golden (set LOCO_GOLDEN)")
	}
	c, err := golden.Load(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// rawTensors reads every tensor of a file as stored.
func rawTensors(t testing.TB, path string) ([]safetensors.Tensor, map[string]string) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []safetensors.Tensor
	for _, k := range f.Names() {
		info, _ := f.Info(k)
		b, err := f.ReadRaw(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, safetensors.Tensor{Name: k, DType: info.DType, Shape: info.Shape, Data: b})
	}
	return out, f.Metadata()
}

// tinyCheckpoint writes the golden tiny UNet and tiny text encoder (both
// float16) into one single-file checkpoint, as a full SD 1.x file holds
// them, and returns its path.
func tinyCheckpoint(t testing.TB, dir string, drop ...string) string {
	t.Helper()
	u := goldenCase(t, "locon_unet_tiny")
	te := goldenCase(t, "locon_te_tiny")
	a, _ := rawTensors(t, u.Path("model.safetensors"))
	b, _ := rawTensors(t, te.Path("model.safetensors"))
	var all []safetensors.Tensor
	for _, x := range append(a, b...) {
		keep := true
		for _, d := range drop {
			keep = keep && x.Name != d
		}
		if keep {
			all = append(all, x)
		}
	}
	// An extra non-model key, carried over untouched.
	ac, err := safetensors.FromFloat32("alphas_cumprod", safetensors.F32, []int{3}, []float32{0.99, 0.5, 0.01})
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, ac)
	p := filepath.Join(dir, "tiny.safetensors")
	if err := safetensors.WriteFile(p, all, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeNetwork saves modules as a LoCon file in dtype dt.
func writeNetwork(t testing.TB, path string, mods []*lycoris.FileModule, dt safetensors.DType, md map[string]string) {
	t.Helper()
	ts, err := moduleTensors(mods, dt)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(path, ts, md); err != nil {
		t.Fatal(err)
	}
}

func readNet(t testing.TB, path string) *lycoris.File {
	t.Helper()
	f, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// randomModule makes a LoCon module for layer l with random factors
// (Tucker when tucker and l is a k×k conv).
func randomModule(rng *rand.Rand, l *Layer, r int, alpha float32, tucker bool) *lycoris.FileModule {
	fill := func(n int, s float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * s)
		}
		return v
	}
	m := &lycoris.FileModule{Name: l.Name, Alpha: alpha, HasAlpha: true}
	if !l.Conv {
		m.DownShape, m.UpShape = []int{r, l.In()}, []int{l.Out(), r}
	} else if tucker && l.Kernel > 1 {
		m.DownShape, m.UpShape = []int{r, l.In(), 1, 1}, []int{l.Out(), r, 1, 1}
		m.MidShape = []int{r, r, l.Kernel, l.Kernel}
		m.Mid = fill(numel(m.MidShape), 0.3)
	} else {
		m.DownShape, m.UpShape = []int{r, l.In(), l.Kernel, l.Kernel}, []int{l.Out(), r, 1, 1}
	}
	m.Down = fill(numel(m.DownShape), 0.2)
	m.Up = fill(numel(m.UpShape), 0.1)
	return m
}

// naiveDelta computes s·ΔW of a module directly from its 4-D (or 2-D)
// tensors in float64, index by index (merge.md A.1), without Factors.
func naiveDelta(m *lycoris.FileModule, shape []int) []float64 {
	out := make([]float64, numel(shape))
	r := m.DownShape[0]
	s := 1.0
	if m.HasAlpha && m.Alpha != 0 {
		s = float64(m.Alpha) / float64(r)
	}
	O, C := shape[0], shape[1]
	kh, kw := 1, 1
	if len(shape) == 4 {
		kh, kw = shape[2], shape[3]
	}
	for o := 0; o < O; o++ {
		for c := 0; c < C; c++ {
			for h := 0; h < kh; h++ {
				for w := 0; w < kw; w++ {
					var sum float64
					if m.Mid == nil {
						for j := 0; j < r; j++ {
							sum += float64(m.Up[o*r+j]) * float64(m.Down[((j*C+c)*kh+h)*kw+w])
						}
					} else {
						for i := 0; i < r; i++ {
							for j := 0; j < r; j++ {
								sum += float64(m.Up[o*r+i]) * float64(m.Mid[((i*r+j)*kh+h)*kw+w]) * float64(m.Down[j*C+c])
							}
						}
					}
					out[((o*C+c)*kh+h)*kw+w] = s * sum
				}
			}
		}
	}
	return out
}

func relErr(got []float32, want []float64) float64 {
	var d, n float64
	for i := range got {
		d += (float64(got[i]) - want[i]) * (float64(got[i]) - want[i])
		n += want[i] * want[i]
	}
	if n == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / n)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func isTE(name string) bool { return strings.HasPrefix(name, "lora_te") }
