package merge

import (
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/gonum/mat"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// Dynamic rank methods of kohya's resize_lora.py.
const (
	SVRatio      = "sv_ratio"
	SVFro        = "sv_fro"
	SVCumulative = "sv_cumulative"
)

// minSV: a module whose largest singular value is at most this keeps rank 1.
const minSV = 1e-6

// RankFor is kohya's rank choice (merge.md B.2) for singular values s
// (descending, the full list of min(out, cols) values): method "" keeps cap;
// the dynamic methods count values against param, add kohya's +1, and are
// capped at cap. A spectrum with s[0] ≤ 1e-6 gets rank 1.
func RankFor(s []float64, method string, param float64, cap int) int {
	n := len(s)
	clamp := func(x int) int { return max(1, min(x, n-1)) }
	k := cap
	switch method {
	case "":
	case SVRatio:
		c := 0
		for _, v := range s {
			if v > s[0]/param {
				c++
			}
		}
		k = clamp(c) + 1
	case SVCumulative, SVFro:
		var total float64
		for _, v := range s {
			if method == SVFro {
				v *= v
			}
			total += v
		}
		t := param
		if method == SVFro {
			t = param * param
		}
		c, acc := 0, 0.0
		for _, v := range s {
			if method == SVFro {
				v *= v
			}
			acc += v
			if acc/total < t {
				c++
			}
		}
		k = clamp(c+1) + 1
	default:
		panic("merge: unknown rank method " + method)
	}
	if n == 0 || s[0] <= minSV {
		return 1
	}
	return min(k, cap)
}

// ResizeOptions choose the new ranks (kohya resize_lora.py arguments).
type ResizeOptions struct {
	Rank     int // new rank of Linear and 1×1 conv modules (the cap for dynamic methods)
	ConvRank int // new rank of k×k conv modules; 0 means Rank
	Method   string
	Param    float64 // the dynamic method's parameter
	// Precision of the output tensors; empty keeps the input's dtype.
	Precision safetensors.DType
}

// Check validates the options.
func (o *ResizeOptions) Check() error {
	if o.Rank < 1 {
		return fmt.Errorf("rank must be at least 1, got %d", o.Rank)
	}
	if o.ConvRank < 0 {
		return fmt.Errorf("conv rank must be at least 1, got %d", o.ConvRank)
	}
	switch o.Method {
	case "":
	case SVRatio:
		if !(o.Param >= 1) || math.IsInf(o.Param, 0) {
			return fmt.Errorf("sv_ratio needs a ratio ≥ 1 (largest/smallest kept singular value), got %v", o.Param)
		}
	case SVFro, SVCumulative:
		if !(o.Param > 0 && o.Param <= 1) {
			return fmt.Errorf("%s needs a fraction in (0, 1], got %v", o.Method, o.Param)
		}
	default:
		return fmt.Errorf("unknown dynamic method %q (sv_ratio, sv_fro, sv_cumulative)", o.Method)
	}
	switch o.Precision {
	case "", safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return fmt.Errorf("precision %s is not one of F32, F16, BF16", o.Precision)
	}
	return nil
}

// ModuleResize reports one resized module.
type ModuleResize struct {
	Name           string
	OldRank, Rank  int
	Alpha          float64
	SumRetained    float64 // Σ_{i≤k} σ_i / Σσ
	FroRetained    float64 // sqrt(Σ_{i≤k} σ_i² / Σσ²)
	MaxRatio       float64 // σ_1/σ_k
	FoldedTucker   bool
	DiscardedError float64 // ‖s·ΔW − s'·ΔW'‖_F = s·sqrt(Σ_{i>k} σ_i²)
}

// ResizeModule resizes one module (merge.md B.1 with the B.4 fixes): a
// Tucker module is folded into a plain k×k down first, 1×1 convs are
// capped by Rank (not ConvRank), and k never exceeds the old rank or
// min(out, in·kh·kw) — beyond those there are only zero directions. The
// SVD is of U·D in float64 (computed from the factors, exact).
func ResizeModule(m *lycoris.FileModule, l *Layer, o ResizeOptions) (*lycoris.FileModule, *ModuleResize, error) {
	fa, err := FactorsFor(m, l)
	if err != nil {
		return nil, nil, err
	}
	if fa.LoHa {
		return nil, nil, fmt.Errorf("module %s is LoHa: resize works on LoCon (lora_up/lora_down) networks", m.Name)
	}
	svd, err := factoredSVD(mat.NewDense(fa.Out, fa.R, f64(fa.Up)), mat.NewDense(fa.R, fa.Cols, f64(fa.Down)))
	if err != nil {
		return nil, nil, fmt.Errorf("module %s: %w", m.Name, err)
	}
	cap := o.Rank
	if l.Conv && l.Kernel > 1 && o.ConvRank > 0 {
		cap = o.ConvRank
	}
	s := svd.Padded()
	k := RankFor(s, o.Method, o.Param, cap)
	k = min(k, fa.R, len(svd.S), svd.N)
	scale := Scale(m)
	rep := &ModuleResize{Name: m.Name, OldRank: fa.R, Rank: k, Alpha: scale * float64(k), FoldedTucker: m.Mid != nil}
	var sum, sumK, sq, sqK float64
	for i, v := range s {
		sum += v
		sq += v * v
		if i < k {
			sumK += v
			sqK += v * v
		}
	}
	if sum > 0 {
		rep.SumRetained, rep.FroRetained = sumK/sum, math.Sqrt(sqK/sq)
		rep.MaxRatio = s[0] / s[k-1]
	}
	rep.DiscardedError = scale * math.Sqrt(max(0, sq-sqK))
	nm := &lycoris.FileModule{Name: m.Name, Alpha: float32(rep.Alpha), HasAlpha: true}
	nm.Up = make([]float32, fa.Out*k)
	for i := 0; i < fa.Out; i++ {
		for j := 0; j < k; j++ {
			nm.Up[i*k+j] = float32(svd.P.At(i, j) * svd.S[j])
		}
	}
	nm.Down = make([]float32, k*fa.Cols)
	for j := 0; j < k; j++ {
		for c := 0; c < fa.Cols; c++ {
			nm.Down[j*fa.Cols+c] = float32(svd.Qt.At(j, c))
		}
	}
	if l.Conv {
		nm.UpShape, nm.DownShape = []int{fa.Out, k, 1, 1}, []int{k, l.In(), l.Kernel, l.Kernel}
	} else {
		nm.UpShape, nm.DownShape = []int{fa.Out, k}, []int{k, l.In()}
	}
	return nm, rep, nil
}

// ResizeReport says what Resize did.
type ResizeReport struct {
	Modules  []*ModuleResize
	Metadata map[string]string
}

// Resize reads a LoCon file, resizes every module and writes the result
// with kohya's resize metadata (merge.md B.3) and fresh hashes. Each
// module's layer shape is read from its own factors (ModuleLayer), so
// networks for any model size resize.
func Resize(in, out string, o ResizeOptions) (*ResizeReport, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if err := checkOutput(out, in); err != nil {
		return nil, err
	}
	f, err := lycoris.ReadFile(in)
	if err != nil {
		return nil, err
	}
	ms, err := selfMatch(f)
	if err != nil {
		return nil, err
	}
	maxOld := 0
	for _, m := range ms {
		maxOld = max(maxOld, m.Module.Rank())
	}
	if o.Method == "" && max(o.Rank, o.ConvRank) > maxOld {
		return nil, fmt.Errorf("%s: rank %d is larger than possible: the network's largest rank is %d, and a resize cannot add information",
			in, max(o.Rank, o.ConvRank), maxOld)
	}
	rep := &ResizeReport{}
	var mods []*lycoris.FileModule
	for _, m := range ms {
		nm, mr, err := ResizeModule(m.Module, m.Layer, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in, err)
		}
		mods = append(mods, nm)
		rep.Modules = append(rep.Modules, mr)
	}
	md := map[string]string{}
	for k, v := range f.Metadata {
		md[k] = v
	}
	old := md["ss_training_comment"]
	if old == "" {
		old = "None"
	}
	if o.Method == "" {
		conv := ""
		if o.ConvRank > 0 && o.ConvRank != o.Rank {
			conv = fmt.Sprintf(" (conv: %d)", o.ConvRank)
		}
		md["ss_training_comment"] = fmt.Sprintf("dimension is resized from %d to %d%s; %s", maxOld, o.Rank, conv, old)
		md["ss_network_dim"] = strconv.Itoa(o.Rank)
		// kohya: the alpha of the last module processed in sorted key order.
		md["ss_network_alpha"] = pyFloat(rep.Modules[len(rep.Modules)-1].Alpha)
	} else {
		md["ss_training_comment"] = fmt.Sprintf("Dynamic resize with %s: %s from %d; %s", o.Method, pyFloat(o.Param), maxOld, old)
		md["ss_network_dim"], md["ss_network_alpha"] = "Dynamic", "Dynamic"
	}
	dt := o.Precision
	if dt == "" {
		dt = networkDType(in)
	}
	if err := SaveNetwork(out, mods, dt, md); err != nil {
		return nil, err
	}
	rep.Metadata = md
	return rep, nil
}

// ModuleLayer is the layer a module's factors imply: Linear for 2-D
// factors, else a conv whose kernel is lora_down's (lora_mid's for Tucker).
func ModuleLayer(m *lycoris.FileModule) (*Layer, error) {
	l := &Layer{Name: m.Name, Key: m.Name, Kernel: 1}
	switch {
	case len(m.DownShape) == 2 && len(m.UpShape) == 2:
		l.Shape = []int{m.UpShape[0], m.DownShape[1]}
	case len(m.DownShape) == 4 && len(m.UpShape) == 4 && m.DownShape[2] == m.DownShape[3]:
		k := m.DownShape[2]
		if m.Mid != nil {
			k = m.MidShape[2]
		}
		l.Conv, l.Kernel = true, k
		l.Shape = []int{m.UpShape[0], m.DownShape[1], k, k}
	default:
		return nil, fmt.Errorf("module %s: lora_down %v and lora_up %v are neither Linear (2-D) nor square conv (4-D) factors", m.Name, m.DownShape, m.UpShape)
	}
	return l, nil
}

// selfMatch pairs each module with the layer its own shapes imply.
func selfMatch(f *lycoris.File) ([]Matched, error) {
	var out []Matched
	for _, m := range f.Modules {
		l, err := ModuleLayer(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		fa, err := FactorsFor(m, l)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		out = append(out, Matched{Module: m, Layer: l, Factors: fa})
	}
	return out, nil
}
