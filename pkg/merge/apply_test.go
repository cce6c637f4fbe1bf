package merge

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/backend/cpu"
	"loco/pkg/lycoris"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
)

// TestApplyGoldenForward merges the golden UNet LoCon and the golden
// text-encoder LoCon into one checkpoint holding both tiny models, then runs
// the merged models without any LoCon: their outputs must equal the golden
// outputs computed with the LoCon applied (PyTorch/LyCORIS).
func TestApplyGoldenForward(t *testing.T) {
	uc, tc := goldenCase(t, "locon_unet_tiny"), goldenCase(t, "locon_te_tiny")
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	out := filepath.Join(dir, "merged.safetensors")
	rep, err := Apply(ApplyOptions{Base: base, Output: out, Precision: safetensors.F32,
		Networks: []Input{{Path: uc.Path("locon.safetensors"), TE: 1, UNet: 1}, {Path: tc.Path("locon.safetensors"), TE: 1, UNet: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 282+18 {
		t.Errorf("changed %d layer weights, want 300", rep.Changed)
	}
	mf, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	if md := mf.Metadata(); md["modelspec.architecture"] != "stable-diffusion-v1" || md["modelspec.title"] != "merged" ||
		md["modelspec.merged_from"] != "tiny, locon, locon" || md["format"] != "pt" {
		t.Errorf("metadata %v", md)
	}
	e := tensor.NewEngine(cpu.New())

	var ucfg unet.Config
	if err := json.Unmarshal(uc.Config, &ucfg); err != nil {
		t.Fatal(err)
	}
	u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, sd.NewFileSource(mf, e, tensor.F32)), ucfg)
	if err != nil {
		t.Fatal(err)
	}
	var ts []float32
	for _, v := range uc.Int64(t, "timesteps") {
		ts = append(ts, float32(v))
	}
	x := e.FromFloat32(uc.Float32(t, "x"), uc.Shape("x")...)
	ctx := e.FromFloat32(uc.Float32(t, "context"), uc.Shape("context")...)
	var y *tensor.Tensor
	e.NoGrad(func() { y = u.Forward(x, ts, ctx) })
	rel := uc.Check(t, "out", y.Float32s())
	t.Logf("UNet forward of the merged model vs golden out (LoCon applied): relative L2 %.3g", rel)
	e.EndStep()

	ccfg, err := clip.ParseConfig(tc.Config)
	if err != nil {
		t.Fatal(err)
	}
	b := nn.NewBuilder(sd.TEPrefix, sd.NewFileSource(mf, e, tensor.F32))
	m := clip.New(b, ccfg)
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	idsFlat, shape := tc.Int64(t, "ids"), tc.Shape("ids")
	ids := make([][]int32, shape[0])
	for i := range ids {
		for _, v := range idsFlat[i*shape[1] : (i+1)*shape[1]] {
			ids[i] = append(ids[i], int32(v))
		}
	}
	var h *tensor.Tensor
	e.NoGrad(func() { h = m.Encode(ids, 1) })
	rel = tc.Check(t, "out", h.Float32s())
	t.Logf("text encoder of the merged model vs golden out: relative L2 %.3g", rel)
}

// TestApplyWeights checks every merged weight against base + ratio·s·ΔW
// computed index by index from the file tensors, with the layer found
// through golden/sd15/unet_ldm_to_diffusers.tsv (not through the Table),
// and every other tensor against the base.
func TestApplyWeights(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	root := filepath.Dir(uc.Dir)
	ldm := map[string]string{} // kohya name → LDM weight key
	for k, v := range readTSV(t, filepath.Join(root, "sd15", "unet_ldm_to_diffusers.tsv")) {
		ldm["lora_unet_"+strings.ReplaceAll(v, ".", "_")] = k + ".weight"
	}
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	for _, tc := range []struct {
		name string
		prec safetensors.DType
		tol  float64
	}{{"f32", safetensors.F32, 2e-7}, {"keep", "", 1e-3}} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".safetensors")
			if _, err := Apply(ApplyOptions{Base: base, Output: out, Precision: tc.prec,
				Networks: []Input{{Path: uc.Path("locon.safetensors"), TE: 1, UNet: 0.7}}}); err != nil {
				t.Fatal(err)
			}
			bf, _ := safetensors.Open(base)
			defer bf.Close()
			mf, _ := safetensors.Open(out)
			defer mf.Close()
			net := readNet(t, uc.Path("locon.safetensors"))
			changed := map[string]bool{}
			worst := 0.0
			for _, m := range net.Modules {
				key := ldm[m.Name]
				if key == "" {
					t.Fatalf("%s: not in unet_ldm_to_diffusers.tsv", m.Name)
				}
				changed[key] = true
				info, _ := bf.Info(key)
				w, _ := bf.ReadFloat32(key)
				got, _ := mf.ReadFloat32(key)
				if mi, _ := mf.Info(key); tc.prec == "" && mi.DType != info.DType {
					t.Errorf("%s: dtype %s, base %s", key, mi.DType, info.DType)
				}
				d := naiveDelta(m, info.Shape)
				want := make([]float64, len(d))
				for i := range d {
					want[i] = float64(w[i]) + 0.7*d[i]
				}
				worst = max(worst, relErr(got, want))
			}
			if worst > tc.tol {
				t.Errorf("merged weights vs base + 0.7·s·ΔW: worst relative error %.3g > %.3g", worst, tc.tol)
			}
			t.Logf("%d layers, worst relative error %.3g", len(changed), worst)
			for _, k := range bf.Names() {
				if changed[k] {
					continue
				}
				a, _ := bf.ReadFloat32(k)
				b, _ := mf.ReadFloat32(k)
				for i := range a {
					if a[i] != b[i] {
						t.Fatalf("%s[%d]: %v, base %v (not a LoCon target, must be unchanged)", k, i, b[i], a[i])
					}
				}
				if tc.prec == "" {
					ra, _ := bf.ReadRaw(k)
					rb, _ := mf.ReadRaw(k)
					if string(ra) != string(rb) {
						t.Fatalf("%s: bytes differ from the base", k)
					}
				}
			}
		})
	}
}

// TestApplyZeroNetwork: a freshly initialised LoCon (up = 0) leaves every
// tensor byte-identical when the dtype is kept.
func TestApplyZeroNetwork(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	net := readNet(t, uc.Path("locon.safetensors"))
	for _, m := range net.Modules {
		clear(m.Up)
	}
	np := filepath.Join(dir, "zero.safetensors")
	writeNetwork(t, np, net.Modules, safetensors.F16, nil)
	out := filepath.Join(dir, "out.safetensors")
	if _, err := Apply(ApplyOptions{Base: base, Output: out, Networks: []Input{{Path: np, TE: 1, UNet: 1}}}); err != nil {
		t.Fatal(err)
	}
	a, _ := rawTensors(t, base)
	b, _ := rawTensors(t, out)
	if len(a) != len(b) {
		t.Fatalf("%d tensors, base %d", len(b), len(a))
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].DType != b[i].DType || string(a[i].Data) != string(b[i].Data) {
			// −0.0 + 0 = +0.0 is the one allowed change; compare by value then.
			av, bv := f16Values(a[i].Data), f16Values(b[i].Data)
			for j := range av {
				if av[j] != bv[j] {
					t.Fatalf("%s differs from the base", a[i].Name)
				}
			}
		}
	}
}

// f16Values reads little-endian 16-bit words, −0 as +0.
func f16Values(b []byte) []float32 {
	out := make([]float32, len(b)/2)
	for i := range out {
		h := uint16(b[2*i]) | uint16(b[2*i+1])<<8
		if h == 0x8000 {
			h = 0
		}
		out[i] = float32(h)
	}
	return out
}

// TestApply2023AndTucker applies a 2023-layout network (no conv_in,
// conv_out, time_embedding) and a Tucker network; each merged weight must
// equal base + s·ΔW computed index by index, and the layers the 2023 set
// lacks must stay as they were.
func TestApply2023AndTucker(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	bf, err := safetensors.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	tab, err := CheckpointTable(bf)
	if err != nil {
		t.Fatal(err)
	}
	net := readNet(t, uc.Path("locon.safetensors"))
	var old []*lycoris.FileModule
	skipped := map[string]bool{}
	for _, m := range net.Modules {
		switch m.Name {
		case "lora_unet_conv_in", "lora_unet_conv_out", "lora_unet_time_embedding_linear_1", "lora_unet_time_embedding_linear_2":
			skipped[tab.Layers[m.Name].Key] = true
		default:
			old = append(old, m)
		}
	}
	p2023 := filepath.Join(dir, "net2023.safetensors")
	writeNetwork(t, p2023, old, safetensors.F32, map[string]string{"ss_network_module": "lycoris.kohya"})

	rng := rand.New(rand.NewPCG(7, 7))
	var tucker []*lycoris.FileModule
	for _, n := range tab.Names() {
		l := tab.Layers[n]
		tucker = append(tucker, randomModule(rng, l, 4, 2, true))
	}
	pT := filepath.Join(dir, "tucker.safetensors")
	writeNetwork(t, pT, tucker, safetensors.F32, nil)

	for _, tc := range []struct {
		path string
		mods []*lycoris.FileModule
	}{{p2023, old}, {pT, tucker}} {
		out := filepath.Join(dir, "out.safetensors")
		rep, err := Apply(ApplyOptions{Base: base, Output: out, Precision: safetensors.F32, Networks: []Input{{Path: tc.path, TE: 1, UNet: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Changed != len(tc.mods) {
			t.Errorf("%s: changed %d, want %d", tc.path, rep.Changed, len(tc.mods))
		}
		mf, _ := safetensors.Open(out)
		worst := 0.0
		for _, m := range tc.mods {
			l := tab.Layers[m.Name]
			w, _ := bf.ReadFloat32(l.Key)
			got, _ := mf.ReadFloat32(l.Key)
			d := naiveDelta(m, l.Shape)
			for i := range d {
				d[i] += float64(w[i])
			}
			worst = max(worst, relErr(got, d))
		}
		for k := range skipped {
			a, _ := bf.ReadFloat32(k)
			b, _ := mf.ReadFloat32(k)
			if tc.path == p2023 && relErr(b, f64(a)) != 0 {
				t.Errorf("%s changed by a 2023 network that has no module for it", k)
			}
		}
		mf.Close()
		if worst > 2e-7 {
			t.Errorf("%s: worst relative error %.3g", filepath.Base(tc.path), worst)
		}
		t.Logf("%s: %d modules, worst relative error %.3g", filepath.Base(tc.path), len(tc.mods), worst)
	}
}

// TestLoHaDeltaRow checks the LoHa delta rows against the definition.
func TestLoHaDeltaRow(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	out, rank, cols := 3, 2, 5
	v := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	f := &Factors{Out: out, R: rank, Cols: cols, LoHa: true, W1a: v(out * rank), W1b: v(rank * cols), W2a: v(out * rank), W2b: v(rank * cols)}
	w := make([]float32, out*cols)
	f.AddDelta(w, 0.5)
	for o := 0; o < out; o++ {
		for c := 0; c < cols; c++ {
			var p1, p2 float64
			for j := 0; j < rank; j++ {
				p1 += float64(f.W1a[o*rank+j]) * float64(f.W1b[j*cols+c])
				p2 += float64(f.W2a[o*rank+j]) * float64(f.W2b[j*cols+c])
			}
			if want := 0.5 * p1 * p2; math.Abs(float64(w[o*cols+c])-want) > 1e-5*(1+math.Abs(want)) {
				t.Fatalf("ΔW[%d,%d] = %v, want %v", o, c, w[o*cols+c], want)
			}
		}
	}
}

// TestApplyLoHaForward trains nothing: it builds a LoHa network with random
// factors on the tiny UNet, runs the hooked forward, saves the network,
// merges it into the base and checks the merged UNet computes the same.
func TestApplyLoHaForward(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	var ucfg unet.Config
	if err := json.Unmarshal(uc.Config, &ucfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	bf, err := safetensors.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	e := tensor.NewEngine(cpu.New())
	u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, sd.NewFileSource(bf, e, tensor.F32)), ucfg)
	if err != nil {
		t.Fatal(err)
	}
	lin, conv := u.Layers()
	rng := rand.New(rand.NewPCG(8, 8))
	net, err := lycoris.New(e, lycoris.Config{Algo: lycoris.AlgoLoHa, Dim: 4, Alpha: 2, ConvDim: 2, ConvAlpha: 1}, lin, conv, rng)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]float32, net.Len())
	for i := range vals {
		vals[i] = float32(rng.NormFloat64() * 0.05)
	}
	e.B.Upload(net.Params, vals)
	var ts []float32
	for _, v := range uc.Int64(t, "timesteps") {
		ts = append(ts, float32(v))
	}
	run := func(u *unet.UNet) []float32 {
		x := e.FromFloat32(uc.Float32(t, "x"), uc.Shape("x")...)
		ctx := e.FromFloat32(uc.Float32(t, "context"), uc.Shape("context")...)
		var y *tensor.Tensor
		e.NoGrad(func() { y = u.Forward(x, ts, ctx) })
		v := y.Float32s()
		e.EndStep()
		return v
	}
	hooked := run(u)
	lycoris.Detach(lin, conv)
	plain := run(u)
	netPath := filepath.Join(dir, "loha.safetensors")
	if err := net.Save(netPath, safetensors.F32, map[string]string{"ss_network_module": "lycoris.kohya"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged.safetensors")
	if _, err := Apply(ApplyOptions{Base: base, Output: out, Precision: safetensors.F32,
		Networks: []Input{{Path: netPath, TE: 1, UNet: 1}}}); err != nil {
		t.Fatal(err)
	}
	mf, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	mu, err := unet.New(nn.NewBuilder(sd.UNetPrefix, sd.NewFileSource(mf, e, tensor.F32)), ucfg)
	if err != nil {
		t.Fatal(err)
	}
	merged := run(mu)
	want := make([]float64, len(hooked))
	var effect float64
	for i := range hooked {
		want[i] = float64(hooked[i])
		effect += math.Abs(float64(hooked[i] - plain[i]))
	}
	if effect == 0 {
		t.Fatal("the LoHa network changes nothing: the test would prove nothing")
	}
	if rel := relErr(merged, want); rel > 1e-5 {
		t.Errorf("merged LoHa forward differs from the hooked forward: relative error %.3g", rel)
	}
}
