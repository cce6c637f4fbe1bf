package merge

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// TestRankForWorked reproduces the worked values of merge.md B.2.
func TestRankForWorked(t *testing.T) {
	s := []float64{10, 5, 2, 1, 0.5, 0.1}
	for _, c := range []struct {
		method string
		param  float64
		cap    int
		want   int
	}{
		{SVRatio, 4, 8, 3},
		{SVCumulative, 0.9, 8, 4},
		{SVCumulative, 0.5, 8, 2},
		{SVFro, 0.9, 8, 3},
		{SVFro, 0.99, 8, 4},
		{SVRatio, 1000, 8, 6},
		{SVCumulative, 0.99, 3, 3},
		{"", 0, 5, 5},
	} {
		if got := RankFor(s, c.method, c.param, c.cap); got != c.want {
			t.Errorf("%s %v cap %d: k = %d, want %d", c.method, c.param, c.cap, got, c.want)
		}
	}
	if got := RankFor([]float64{1e-7, 0}, SVRatio, 4, 8); got != 1 {
		t.Errorf("σ = (1e-7, 0): k = %d, want 1", got)
	}
}

// moduleWithSpectrum builds a Linear module [out, in] of rank len(s) whose
// unscaled product U·D has exactly the singular values s.
func moduleWithSpectrum(rng *rand.Rand, name string, out, in int, s []float64, alpha float32) *lycoris.FileModule {
	r := len(s)
	orth := func(n int) *mat.Dense {
		a := mat.NewDense(n, r, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < r; j++ {
				a.Set(i, j, rng.NormFloat64())
			}
		}
		q, _ := thinQR(a)
		return q
	}
	p, q := orth(out), orth(in)
	m := &lycoris.FileModule{Name: name, Alpha: alpha, HasAlpha: true, UpShape: []int{out, r}, DownShape: []int{r, in}}
	for i := 0; i < out; i++ {
		for j := 0; j < r; j++ {
			m.Up = append(m.Up, float32(p.At(i, j)*s[j]))
		}
	}
	for j := 0; j < r; j++ {
		for c := 0; c < in; c++ {
			m.Down = append(m.Down, float32(q.At(c, j)))
		}
	}
	return m
}

// TestResizeWorkedAlpha runs the worked values through ResizeModule: the
// ranks chosen and α' = scale·k (scale 0.5).
func TestResizeWorkedAlpha(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := moduleWithSpectrum(rng, "lora_unet_x", 12, 10, []float64{10, 5, 2, 1, 0.5, 0.1}, 3)
	l, _ := ModuleLayer(m)
	for _, c := range []struct {
		o     ResizeOptions
		k     int
		alpha float64
	}{
		{ResizeOptions{Rank: 8, Method: SVRatio, Param: 4}, 3, 1.5},
		{ResizeOptions{Rank: 8, Method: SVCumulative, Param: 0.9}, 4, 2.0},
		{ResizeOptions{Rank: 8, Method: SVFro, Param: 0.99}, 4, 2.0},
		{ResizeOptions{Rank: 3, Method: SVCumulative, Param: 0.99}, 3, 1.5},
		{ResizeOptions{Rank: 2}, 2, 1.0},
	} {
		_, rep, err := ResizeModule(m, l, c.o)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Rank != c.k || rep.Alpha != c.alpha {
			t.Errorf("%+v: k %d α' %v, want %d and %v", c.o, rep.Rank, rep.Alpha, c.k, c.alpha)
		}
	}
	tiny := moduleWithSpectrum(rng, "lora_unet_y", 12, 10, []float64{1e-7, 1e-8}, 3)
	_, rep, err := ResizeModule(tiny, l, ResizeOptions{Rank: 8, Method: SVRatio, Param: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rank != 1 || rep.Alpha != 1.5 {
		t.Errorf("σ₁ ≤ 1e-6: k %d α' %v, want 1 and scale·1 = 1.5", rep.Rank, rep.Alpha)
	}
}

// product returns s·ΔW of a module as float64.
func product(m *lycoris.FileModule) []float64 {
	l, _ := ModuleLayer(m)
	return naiveDelta(m, l.Shape)
}

// TestResizeEckartYoung: for Linear, 1×1, 3×3 and Tucker modules, the
// resized product is the best rank-k approximation: its error equals the
// discarded singular values of s·ΔW (from a dense SVD of the product
// computed index by index), and at the old rank the product is unchanged.
func TestResizeEckartYoung(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	layers := []*Layer{
		{Name: "lin", Shape: []int{40, 24}, Kernel: 1},
		{Name: "c1", Shape: []int{32, 20, 1, 1}, Conv: true, Kernel: 1},
		{Name: "c3", Shape: []int{16, 12, 3, 3}, Conv: true, Kernel: 3},
		{Name: "tucker", Shape: []int{16, 12, 3, 3}, Conv: true, Kernel: 3},
	}
	for _, l := range layers {
		m := randomModule(rng, l, 8, 4, l.Name == "tucker")
		want := product(m)
		var svd mat.SVD
		svd.Factorize(mat.NewDense(l.Out(), l.Cols(), append([]float64(nil), want...)), mat.SVDNone)
		sv := svd.Values(nil)
		for _, k := range []int{1, 3, 8} {
			nm, rep, err := ResizeModule(m, l, ResizeOptions{Rank: k, ConvRank: k})
			if err != nil {
				t.Fatal(err)
			}
			if nm.Mid != nil || nm.Rank() != k {
				t.Fatalf("%s → %d: rank %d, mid %v", l.Name, k, nm.Rank(), nm.Mid != nil)
			}
			got := product(nm)
			var e2, opt2, n2 float64
			for i := range got {
				e2 += (got[i] - want[i]) * (got[i] - want[i])
				n2 += want[i] * want[i]
			}
			for _, v := range sv[k:] {
				opt2 += v * v
			}
			e, opt := math.Sqrt(e2), math.Sqrt(opt2)
			if math.Abs(e-opt) > 1e-5*math.Sqrt(n2) || math.Abs(rep.DiscardedError-opt) > 1e-6*math.Sqrt(n2) {
				t.Errorf("%s → rank %d: error %.6g, reported %.6g, Eckart–Young optimum %.6g (‖s·ΔW‖ %.3g)", l.Name, k, e, rep.DiscardedError, opt, math.Sqrt(n2))
			}
			if k == 8 && e > 1e-6*math.Sqrt(n2) {
				t.Errorf("%s: resize to the full rank changed the product by %.3g (relative)", l.Name, e/math.Sqrt(n2))
			}
		}
	}
}

// TestResize1x1UsesLinearRank: 1×1 convs take Rank, k×k convs ConvRank.
func TestResize1x1UsesLinearRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	c1 := &Layer{Name: "c1", Shape: []int{16, 16, 1, 1}, Conv: true, Kernel: 1}
	c3 := &Layer{Name: "c3", Shape: []int{16, 16, 3, 3}, Conv: true, Kernel: 3}
	o := ResizeOptions{Rank: 6, ConvRank: 2}
	n1, _, _ := ResizeModule(randomModule(rng, c1, 8, 8, false), c1, o)
	n3, _, _ := ResizeModule(randomModule(rng, c3, 8, 8, false), c3, o)
	if n1.Rank() != 6 || n3.Rank() != 2 {
		t.Errorf("1×1 got rank %d (want 6), 3×3 got %d (want 2)", n1.Rank(), n3.Rank())
	}
	if !slices.Equal(n1.DownShape, []int{6, 16, 1, 1}) || !slices.Equal(n3.DownShape, []int{2, 16, 3, 3}) || !slices.Equal(n3.UpShape, []int{16, 2, 1, 1}) {
		t.Errorf("shapes %v %v %v", n1.DownShape, n3.DownShape, n3.UpShape)
	}
}

// TestResizeFile resizes the golden network (dim 8/alpha 4, conv 4/4) and a
// 2023-layout Tucker network, checks metadata, hashes and bad options.
func TestResizeFile(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	dir := t.TempDir()
	in := uc.Path("locon.safetensors")
	out := filepath.Join(dir, "r4.safetensors")
	rep, err := Resize(in, out, ResizeOptions{Rank: 4})
	if err != nil {
		t.Fatal(err)
	}
	f := readNet(t, out)
	src := readNet(t, in)
	if len(f.Modules) != 282 {
		t.Fatalf("%d modules", len(f.Modules))
	}
	md := f.Metadata
	if md["ss_network_dim"] != "4" || md["ss_network_alpha"] != "2.0" ||
		md["ss_training_comment"] != "dimension is resized from 8 to 4; golden reference case (random weights)" ||
		md["ss_network_args"] != src.Metadata["ss_network_args"] {
		t.Errorf("metadata: dim %q alpha %q comment %q args %q", md["ss_network_dim"], md["ss_network_alpha"], md["ss_training_comment"], md["ss_network_args"])
	}
	raw, _ := os.ReadFile(out)
	sf, _ := safetensors.Open(out)
	sum := sha256.Sum256(raw[8+sf.HeaderSize():])
	sf.Close()
	if md["sshs_model_hash"] != hex.EncodeToString(sum[:]) {
		t.Errorf("sshs_model_hash %s, data hashes to %x", md["sshs_model_hash"], sum)
	}
	for i, m := range f.Modules {
		old := src.Modules[i]
		want := old.Rank()
		if want > 4 {
			want = 4
		}
		if m.Rank() != want || float64(m.Alpha) != Scale(old)*float64(want) || rep.Modules[i].Rank != want {
			t.Errorf("%s: rank %d alpha %v, want %d and %v", m.Name, m.Rank(), m.Alpha, want, Scale(old)*float64(want))
		}
	}
	// Dynamic.
	out2 := filepath.Join(dir, "dyn.safetensors")
	if _, err := Resize(in, out2, ResizeOptions{Rank: 8, Method: SVFro, Param: 0.9}); err != nil {
		t.Fatal(err)
	}
	md2 := readNet(t, out2).Metadata
	if md2["ss_network_dim"] != "Dynamic" || md2["ss_network_alpha"] != "Dynamic" ||
		!strings.HasPrefix(md2["ss_training_comment"], "Dynamic resize with sv_fro: 0.9 from 8; golden") {
		t.Errorf("dynamic metadata %q %q %q", md2["ss_network_dim"], md2["ss_network_alpha"], md2["ss_training_comment"])
	}
	// Bad input.
	for _, c := range []struct {
		o    ResizeOptions
		out  string
		want string
	}{
		{ResizeOptions{Rank: 16}, filepath.Join(dir, "x.safetensors"), "larger than possible"},
		{ResizeOptions{Rank: 0}, filepath.Join(dir, "x.safetensors"), "at least 1"},
		{ResizeOptions{Rank: 4, Method: SVFro, Param: 1.5}, filepath.Join(dir, "x.safetensors"), "fraction"},
		{ResizeOptions{Rank: 4, Method: SVRatio, Param: 0.5}, filepath.Join(dir, "x.safetensors"), "ratio"},
		{ResizeOptions{Rank: 4, Method: "svd"}, filepath.Join(dir, "x.safetensors"), "unknown dynamic method"},
		{ResizeOptions{Rank: 4}, in, "also an input"},
	} {
		_, err := Resize(in, c.out, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v → %s: error %v, want %q", c.o, c.out, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.safetensors")); err == nil {
		t.Error("a failed resize left an output file")
	}
}

// TestResizeTuckerAndApply: a Tucker network (and a 2023-layout one)
// resized to its own rank applies like the original.
func TestResizeTuckerApply(t *testing.T) {
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	bf, _ := safetensors.Open(base)
	tab, err := CheckpointTable(bf)
	bf.Close()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	var mods []*lycoris.FileModule
	for _, n := range tab.Names() {
		mods = append(mods, randomModule(rng, tab.Layers[n], 4, 2, true))
	}
	pT := filepath.Join(dir, "tucker.safetensors")
	writeNetwork(t, pT, mods, safetensors.F32, nil)
	pR := filepath.Join(dir, "tucker-r4.safetensors")
	if _, err := Resize(pT, pR, ResizeOptions{Rank: 4}); err != nil {
		t.Fatal(err)
	}
	r := readNet(t, pR)
	for i, m := range r.Modules {
		if m.Mid != nil {
			t.Fatalf("%s still has lora_mid", m.Name)
		}
		if e := relErr(f32(product(m)), product(mods[i])); e > 1e-5 {
			t.Errorf("%s: resized product differs by %.3g", m.Name, e)
		}
	}
	a, b := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")
	for _, c := range [][2]string{{pT, a}, {pR, b}} {
		if _, err := Apply(ApplyOptions{Base: base, Output: c[1], Precision: safetensors.F32, Networks: []Input{{Path: c[0], TE: 1, UNet: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	fa, _ := safetensors.Open(a)
	defer fa.Close()
	fb, _ := safetensors.Open(b)
	defer fb.Close()
	for _, n := range tab.Names() {
		k := tab.Layers[n].Key
		x, _ := fa.ReadFloat32(k)
		y, _ := fb.ReadFloat32(k)
		if e := relErr(y, f64(x)); e > 1e-6 {
			t.Errorf("%s: merged with the resized network differs by %.3g", k, e)
		}
	}
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
