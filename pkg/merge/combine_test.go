package merge

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// TestCombineRoundTrip: the golden network at ratio 0.5 twice (and at its
// own ranks) combines back into itself; A − A combines to nothing; two
// different networks combine into the sum of their products.
func TestCombineRoundTrip(t *testing.T) {
	uc := goldenCase(t, "locon_unet_tiny")
	dir := t.TempDir()
	in := uc.Path("locon.safetensors")
	src := readNet(t, in)
	out := filepath.Join(dir, "c.safetensors")
	rep, err := Combine([]Input{{in, 0.5, 0.5}, {in, 0.5, 0.5}}, out, RankOptions{Rank: 8, ConvRank: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := readNet(t, out)
	if rep.Modules != 282 || len(c.Modules) != 282 {
		t.Fatalf("%d modules", len(c.Modules))
	}
	for i, m := range c.Modules {
		if e := relErr(f32(product(m)), product(src.Modules[i])); e > 1e-5 {
			t.Errorf("%s: combined product differs by %.3g", m.Name, e)
		}
	}
	if md := c.Metadata; md["ss_network_dim"] != "8" || md["ss_network_alpha"] != "8.0" || md["modelspec.merged_from"] != "locon, locon" ||
		md["ss_network_args"] != `{"conv_dim": "4", "conv_alpha": "4", "algo": "locon"}` || md["sshs_model_hash"] == "" {
		t.Errorf("metadata %v", md)
	}

	// Another network on the same layers: the sum of products, best rank 8+8.
	rng := rand.New(rand.NewPCG(2, 2))
	var other []*lycoris.FileModule
	for _, m := range src.Modules {
		l, _ := ModuleLayer(m)
		other = append(other, randomModule(rng, l, 2, 1, false))
	}
	po := filepath.Join(dir, "other.safetensors")
	writeNetwork(t, po, other, safetensors.F32, nil)
	out2 := filepath.Join(dir, "sum.safetensors")
	if _, err := Combine([]Input{{in, 1, 1}, {po, 0.3, -2}}, out2, RankOptions{Rank: 10, ConvRank: 6}); err != nil {
		t.Fatal(err)
	}
	for i, m := range readNet(t, out2).Modules {
		a, b := product(src.Modules[i]), product(other[i])
		r := -2.0
		if isTE(m.Name) {
			r = 0.3
		}
		for j := range a {
			a[j] += r * b[j]
		}
		if e := relErr(f32(product(m)), a); e > 1e-5 {
			t.Errorf("%s: combined product differs from the sum by %.3g", m.Name, e)
		}
	}

	// A − A is zero everywhere.
	out3 := filepath.Join(dir, "zero.safetensors")
	if _, err := Combine([]Input{{in, 1, 1}, {in, -1, -1}}, out3, RankOptions{Rank: 4}); err != nil {
		t.Fatal(err)
	}
	for _, m := range readNet(t, out3).Modules {
		for _, v := range product(m) {
			if v > 1e-6 || v < -1e-6 {
				t.Fatalf("%s: A − A left %v", m.Name, v)
			}
		}
	}
	if _, err := Combine([]Input{{in, 1, 1}}, in, RankOptions{Rank: 4}); err == nil || !strings.Contains(err.Error(), "also an input") {
		t.Errorf("output = input: %v", err)
	}
	if _, err := Combine([]Input{{in, 1, 1}}, out3, RankOptions{Rank: 0}); err == nil {
		t.Error("rank 0 accepted")
	}
}

// TestExtractRoundTrip: merge the golden network into the tiny checkpoint,
// extract it back from (merged − base): the products match, and applying
// the extracted network to the base gives the merged model again.
func TestExtractRoundTrip(t *testing.T) {
	uc, tc := goldenCase(t, "locon_unet_tiny"), goldenCase(t, "locon_te_tiny")
	dir := t.TempDir()
	base := tinyCheckpoint(t, dir)
	merged := filepath.Join(dir, "merged.safetensors")
	nets := []Input{{uc.Path("locon.safetensors"), 1, 1}, {tc.Path("locon.safetensors"), 1, 1}}
	if _, err := Apply(ApplyOptions{Base: base, Output: merged, Precision: safetensors.F32, Networks: nets}); err != nil {
		t.Fatal(err)
	}
	ex := filepath.Join(dir, "ex.safetensors")
	rep, err := Extract(ex, ExtractOptions{Base: base, Tuned: merged, RankOptions: RankOptions{Rank: 8, ConvRank: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Modules != 300 {
		t.Errorf("extracted %d modules, want 300 (282 UNet + 18 TE)", rep.Modules)
	}
	want := map[string][]float64{}
	for _, n := range nets {
		for _, m := range readNet(t, n.Path).Modules {
			want[m.Name] = product(m)
		}
	}
	got := readNet(t, ex)
	worst := 0.0
	for _, m := range got.Modules {
		w := want[m.Name]
		if w == nil {
			t.Fatalf("extracted %s, which no network has", m.Name)
		}
		worst = max(worst, relErr(f32(product(m)), w))
	}
	// The merged weights are float32 (base float16 + delta): the difference
	// carries their rounding, about 1e-7 of |W|.
	if worst > 1e-4 {
		t.Errorf("extracted products differ from the originals by up to %.3g", worst)
	}
	t.Logf("%d modules, worst relative error of the extracted products %.3g", len(got.Modules), worst)

	again := filepath.Join(dir, "again.safetensors")
	if _, err := Apply(ApplyOptions{Base: base, Output: again, Precision: safetensors.F32, Networks: []Input{{ex, 1, 1}}}); err != nil {
		t.Fatal(err)
	}
	fa, _ := safetensors.Open(merged)
	defer fa.Close()
	fb, _ := safetensors.Open(again)
	defer fb.Close()
	for _, k := range fa.Names() {
		x, _ := fa.ReadFloat32(k)
		y, _ := fb.ReadFloat32(k)
		if e := relErr(y, f64(x)); e > 1e-6 {
			t.Errorf("%s: base + extracted differs from the merged model by %.3g", k, e)
		}
	}

	// 2023 preset leaves out the four single layers; bad inputs.
	ex2 := filepath.Join(dir, "ex2023.safetensors")
	rep, err = Extract(ex2, ExtractOptions{Base: base, Tuned: merged, Preset: lycoris.Preset2023, RankOptions: RankOptions{Rank: 4}})
	if err != nil || rep.Modules != 296 {
		t.Errorf("2023 preset: %d modules (want 296), %v", rep.Modules, err)
	}
	if _, err := Extract(ex2, ExtractOptions{Base: base, Tuned: base, RankOptions: RankOptions{Rank: 4}}); err == nil || !strings.Contains(err.Error(), "nothing to extract") {
		t.Errorf("identical models: %v", err)
	}
	if _, err := Extract(merged, ExtractOptions{Base: base, Tuned: merged, RankOptions: RankOptions{Rank: 4}}); err == nil || !strings.Contains(err.Error(), "also an input") {
		t.Errorf("output = input: %v", err)
	}
}
