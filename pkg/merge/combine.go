package merge

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
)

// RankOptions are the ranks and output precision of a network made by SVD.
type RankOptions struct {
	Rank     int // Linear and 1×1 conv modules
	ConvRank int // k×k conv modules; 0 means Rank
	// ClampQuantile, when in (0, 1), clamps both new factors to ±the
	// quantile of their signed values together, as kohya does with 0.99;
	// 0 leaves them exact (the best rank-k approximation).
	ClampQuantile float64
	Precision     safetensors.DType // empty: F32 for extract, the first input's for combine
}

func (o *RankOptions) check() error {
	if o.Rank < 1 {
		return fmt.Errorf("rank must be at least 1, got %d", o.Rank)
	}
	if o.ConvRank < 0 {
		return fmt.Errorf("conv rank must be at least 1, got %d", o.ConvRank)
	}
	if o.ClampQuantile < 0 || o.ClampQuantile >= 1 {
		return fmt.Errorf("clamp quantile must be in (0, 1) or 0 for none, got %v", o.ClampQuantile)
	}
	switch o.Precision {
	case "", safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return fmt.Errorf("precision %s is not one of F32, F16, BF16", o.Precision)
	}
	return nil
}

func (o *RankOptions) cap(l *Layer) int {
	if l.Conv && l.Kernel > 1 && o.ConvRank > 0 {
		return o.ConvRank
	}
	return o.Rank
}

func (o *RankOptions) convRank() int {
	if o.ConvRank > 0 {
		return o.ConvRank
	}
	return o.Rank
}

// fromSVD makes a module of rank k from a decomposition: U' = P·diag(σ),
// D' = Qt, alpha = k (scale 1), optionally clamped.
func fromSVD(name string, l *Layer, s *SVD, k int, clampQ float64) *lycoris.FileModule {
	k = max(1, min(k, len(s.S)))
	out, cols := l.Out(), l.Cols()
	m := &lycoris.FileModule{Name: name, Alpha: float32(k), HasAlpha: true}
	up := make([]float64, out*k)
	down := make([]float64, k*cols)
	for i := 0; i < out; i++ {
		for j := 0; j < k; j++ {
			up[i*k+j] = s.P.At(i, j) * s.S[j]
		}
	}
	for j := 0; j < k; j++ {
		for c := 0; c < cols; c++ {
			down[j*cols+c] = s.Qt.At(j, c)
		}
	}
	if clampQ > 0 {
		hi := quantile(append(append([]float64(nil), up...), down...), clampQ)
		for _, v := range [][]float64{up, down} {
			for i := range v {
				v[i] = math.Max(-hi, math.Min(hi, v[i]))
			}
		}
	}
	m.Up, m.Down = f32s(up), f32s(down)
	if l.Conv {
		m.UpShape, m.DownShape = []int{out, k, 1, 1}, []int{k, l.In(), l.Kernel, l.Kernel}
	} else {
		m.UpShape, m.DownShape = []int{out, k}, []int{k, l.In()}
	}
	return m
}

// quantile is torch.quantile's linear interpolation (h = (n−1)·q).
func quantile(v []float64, q float64) float64 {
	sort.Float64s(v)
	h := float64(len(v)-1) * q
	lo := int(math.Floor(h))
	if lo+1 >= len(v) {
		return v[len(v)-1]
	}
	return v[lo] + (h-float64(lo))*(v[lo+1]-v[lo])
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// CombineReport says what Combine did.
type CombineReport struct {
	Modules  int
	Ranks    map[string]int // module → new rank
	Metadata map[string]string
}

// Combine sums several networks with ratios, Σ ratio_i·s_i·ΔW_i per module
// (a module missing from a file contributes nothing), and writes the best
// approximation of each sum at the chosen ranks (merge.md C.1, without
// kohya's defects: Tucker modules are folded, 1×1 convs take Rank, alpha is
// a float). The SVD works on the stacked factors, never on the dense sum.
func Combine(inputs []Input, out string, o RankOptions) (*CombineReport, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if len(inputs) == 0 {
		return nil, fmt.Errorf("combine: no network given")
	}
	var paths []string
	for _, in := range inputs {
		paths = append(paths, in.Path)
	}
	if err := checkOutput(out, paths...); err != nil {
		return nil, err
	}
	type part struct {
		fa   *Factors
		coef float64
	}
	parts := map[string][]part{}
	layers := map[string]*Layer{}
	var titles []string
	md := map[string]string{}
	for _, in := range inputs {
		f, err := lycoris.ReadFile(in.Path)
		if err != nil {
			return nil, err
		}
		ms, err := selfMatch(f)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.Factors.LoHa {
				return nil, fmt.Errorf("%s: module %s is LoHa: combine works on LoCon (lora_up/lora_down) networks", in.Path, m.Module.Name)
			}
			if l := layers[m.Module.Name]; l != nil && !slices.Equal(l.Shape, m.Layer.Shape) {
				return nil, fmt.Errorf("%s: module %s changes a %v weight, an earlier network's changes %v", in.Path, m.Module.Name, m.Layer.Shape, l.Shape)
			}
			layers[m.Module.Name] = m.Layer
			parts[m.Module.Name] = append(parts[m.Module.Name], part{m.Factors, in.Ratio(m.Module.Name) * Scale(m.Module)})
		}
		titles = append(titles, title(f.Metadata, in.Path))
		for _, k := range []string{"ss_v2", "ss_base_model_version"} {
			if v, ok := f.Metadata[k]; ok && md[k] == "" {
				md[k] = v
			}
		}
	}
	names := sortedNames(layers)
	rep := &CombineReport{Ranks: map[string]int{}}
	var mods []*lycoris.FileModule
	for _, n := range names {
		l, ps := layers[n], parts[n]
		q := 0
		for _, p := range ps {
			q += p.fa.R
		}
		a := mat.NewDense(l.Out(), q, nil)
		b := mat.NewDense(q, l.Cols(), nil)
		off := 0
		for _, p := range ps {
			for i := 0; i < l.Out(); i++ {
				for j := 0; j < p.fa.R; j++ {
					a.Set(i, off+j, p.coef*float64(p.fa.Up[i*p.fa.R+j]))
				}
			}
			for j := 0; j < p.fa.R; j++ {
				for c := 0; c < l.Cols(); c++ {
					b.Set(off+j, c, float64(p.fa.Down[j*l.Cols()+c]))
				}
			}
			off += p.fa.R
		}
		s, err := factoredSVD(a, b)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", n, err)
		}
		k := min(o.cap(l), q, s.N)
		if len(s.S) == 0 || s.S[0] <= minSV {
			k = 1
		}
		m := fromSVD(n, l, s, k, o.ClampQuantile)
		mods = append(mods, m)
		rep.Ranks[n] = m.Rank()
	}
	rep.Modules = len(mods)
	for k, v := range networkMetadata(o, out) {
		md[k] = v
	}
	md["modelspec.merged_from"] = strings.Join(titles, ", ")
	var desc []string
	for _, in := range inputs {
		desc = append(desc, fmt.Sprintf("%s:%s:%s", stem(in.Path), pyFloat(in.TE), pyFloat(in.UNet)))
	}
	md["ss_training_comment"] = "combined by loco-merge from " + strings.Join(desc, ", ")
	dt := o.Precision
	if dt == "" {
		dt = networkDType(inputs[0].Path)
	}
	if err := SaveNetwork(out, mods, dt, md); err != nil {
		return nil, err
	}
	rep.Metadata = md
	return rep, nil
}

// networkMetadata is the minimal kohya/LyCORIS metadata of a network made
// by loco-merge with these ranks (alpha = rank, scale 1).
func networkMetadata(o RankOptions, out string) map[string]string {
	c := strconv.Itoa(o.convRank())
	return map[string]string{
		"ss_network_module":         "lycoris.kohya",
		"ss_network_dim":            strconv.Itoa(o.Rank),
		"ss_network_alpha":          pyFloat(float64(o.Rank)),
		"ss_network_args":           `{"conv_dim": "` + c + `", "conv_alpha": "` + c + `", "algo": "locon"}`,
		"ss_output_name":            stem(out),
		"modelspec.sai_model_spec":  "1.0.0",
		"modelspec.architecture":    "stable-diffusion-v1/lora",
		"modelspec.implementation":  "diffusers",
		"modelspec.title":           stem(out),
		"modelspec.prediction_type": "epsilon",
		"ss_base_model_version":     "sd_v1",
		"ss_v2":                     "False",
	}
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ExtractOptions describe an extraction of a LoCon from two checkpoints.
type ExtractOptions struct {
	Base, Tuned string
	RankOptions
	// Preset chooses the layers (lycoris.PresetFull, the default, or
	// lycoris.Preset2023 without conv_in, conv_out and time_embedding).
	Preset lycoris.Preset
	// MinDiff skips layers whose largest absolute difference is at most
	// this (0: skip only identical layers).
	MinDiff float64
}

// ExtractReport says what Extract did.
type ExtractReport struct {
	Modules, Skipped int
	Metadata         map[string]string
}

// Extract writes a LoCon approximating Tuned − Base at the chosen ranks
// (merge.md C.2): per layer of the base's table, diff = W_tuned − W_base in
// float64, a truncated SVD (randomized with power iterations for large
// layers, exact when the difference's rank is below rank+12), U' = P·σ,
// D' = Qᵀ, alpha = rank.
func Extract(out string, o ExtractOptions) (*ExtractReport, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.MinDiff < 0 {
		return nil, fmt.Errorf("min diff must not be negative")
	}
	if err := checkOutput(out, o.Base, o.Tuned); err != nil {
		return nil, err
	}
	bc, err := sd.OpenCheckpoint(o.Base)
	if err != nil {
		return nil, err
	}
	defer bc.Close()
	tc, err := sd.OpenCheckpoint(o.Tuned)
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	tab, err := CheckpointTable(bc.F)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	switch o.Preset {
	case "", lycoris.PresetFull:
	case lycoris.Preset2023:
		for _, n := range []string{"lora_unet_conv_in", "lora_unet_conv_out", "lora_unet_time_embedding_linear_1", "lora_unet_time_embedding_linear_2"} {
			skip[n] = true
		}
	default:
		return nil, fmt.Errorf("unknown preset %q (full, 2023)", o.Preset)
	}
	rep := &ExtractReport{}
	var mods []*lycoris.FileModule
	for _, n := range tab.Names() {
		if skip[n] {
			continue
		}
		l := tab.Layers[n]
		info, ok := tc.F.Info(l.Key)
		if !ok {
			return nil, fmt.Errorf("%s: missing tensor %s, which the base has", o.Tuned, l.Key)
		}
		if !slices.Equal(info.Shape, l.Shape) {
			return nil, fmt.Errorf("%s: tensor %s has shape %v, the base's is %v", o.Tuned, l.Key, info.Shape, l.Shape)
		}
		w0, err := bc.F.ReadFloat32(l.Key)
		if err != nil {
			return nil, err
		}
		w1, err := tc.F.ReadFloat32(l.Key)
		if err != nil {
			return nil, err
		}
		diff := make([]float64, len(w0))
		maxAbs := 0.0
		for i := range diff {
			diff[i] = float64(w1[i]) - float64(w0[i])
			maxAbs = math.Max(maxAbs, math.Abs(diff[i]))
		}
		if maxAbs <= o.MinDiff {
			rep.Skipped++
			continue
		}
		k := min(o.cap(l), l.Out(), l.Cols())
		h := fnv.New64a()
		h.Write([]byte(n))
		s, err := randomizedSVD(diff, l.Out(), l.Cols(), k, h.Sum64())
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Key, err)
		}
		mods = append(mods, fromSVD(n, l, s, k, o.ClampQuantile))
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s and %s: no layer differs by more than %v; nothing to extract", o.Base, o.Tuned, o.MinDiff)
	}
	rep.Modules = len(mods)
	md := networkMetadata(o.RankOptions, out)
	md["ss_sd_model_name"] = stem(o.Base)
	md["ss_training_comment"] = fmt.Sprintf("extracted by loco-merge: %s minus %s", stem(o.Tuned), stem(o.Base))
	dt := o.Precision
	if dt == "" {
		dt = safetensors.F32
	}
	if err := SaveNetwork(out, mods, dt, md); err != nil {
		return nil, err
	}
	rep.Metadata = md
	return rep, nil
}
