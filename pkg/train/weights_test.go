package train

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// TestDimsFromWeights: a network saved with other ranks and alphas than
// the configured ones is loaded with --dim-from-weights, trains and is
// saved with the file's ranks and alphas, while the metadata records the
// configured arguments (as sd-scripts does); without it the rank mismatch
// stays the error it was.
func TestDimsFromWeights(t *testing.T) {
	dir := t.TempDir()
	a, lat := tinyRun(t, dir, func(o *Options) {
		o.Epochs, o.SaveEveryNEpochs = 1, 0
		o.NetworkDim, o.NetworkAlpha, o.ConvDim, o.ConvAlpha = 4, 2, 2, 1
	})
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tiny.safetensors")
	src, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// The configured network of tinyRun: dim 8 alpha 4, conv 4/4, with
	// dropouts (create_network_from_weights builds none).
	opt := a.Opt
	opt.NetworkDim, opt.NetworkAlpha, opt.ConvDim, opt.ConvAlpha = 8, 4, 4, 4
	opt.NetworkDropout, opt.RankDropout = 0.1, 0.1
	opt.NetworkWeights, opt.OutputDir, opt.OutputName = path, t.TempDir(), "next"
	models := tinyModels(t)
	if _, err := New(opt, a.Plan, models, lat); err == nil || !strings.Contains(err.Error(), "lora_down.weight has shape") ||
		!strings.Contains(err.Error(), "check network_dim and conv_dim") {
		t.Fatalf("without --dim-from-weights: %v, want the rank mismatch error", err)
	}
	models = tinyModels(t)
	opt.DimFromWeights = true
	notes, err := DimsFromWeights(&opt, models)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.Join(notes, "\n"))
	if opt.NetworkDim != 4 || opt.NetworkAlpha != 2 || opt.ConvDim != 2 || opt.ConvAlpha != 1 || opt.NetworkDropout != 0 || opt.RankDropout != 0 {
		t.Fatalf("resolved options: dim %d alpha %g conv %d/%g dropouts %g %g", opt.NetworkDim, opt.NetworkAlpha, opt.ConvDim, opt.ConvAlpha,
			opt.NetworkDropout, opt.RankDropout)
	}
	if !strings.Contains(notes[0], "rank 4, alpha 2") || !strings.Contains(notes[0], "rank 2, alpha 1") {
		t.Errorf("notes %q", notes)
	}
	b, err := New(opt, a.Plan, models, lat)
	if err != nil {
		t.Fatal(err)
	}
	b.Clock = func() time.Time { return time.Unix(1700000000, 0).UTC() }
	if b.Weights.Loaded != len(src.Modules) || len(b.Weights.Missing)+len(b.Weights.Unexpected)+len(b.Weights.Alphas) != 0 {
		t.Fatalf("report %v", b.Weights)
	}
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err := lycoris.ReadFile(filepath.Join(opt.OutputDir, "next.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Modules) != len(src.Modules) {
		t.Fatalf("%d modules saved, the file had %d", len(out.Modules), len(src.Modules))
	}
	changed := false
	for _, om := range out.Modules {
		sm, _ := src.Module(om.Name)
		if om.Rank() != sm.Rank() || om.Alpha != sm.Alpha || len(om.DownShape) != len(sm.DownShape) {
			t.Fatalf("%s: rank %d alpha %g, the file's %d %g", om.Name, om.Rank(), om.Alpha, sm.Rank(), sm.Alpha)
		}
		for i := range om.Up {
			changed = changed || om.Up[i] != sm.Up[i]
		}
	}
	if !changed {
		t.Error("training changed no lora_up value")
	}
	md := out.Metadata
	if md["ss_network_dim"] != "8" || md["ss_network_alpha"] != "4.0" ||
		md["ss_network_args"] != `{"preset": "full", "conv_dim": "4", "conv_alpha": "4", "algo": "locon", "rank_dropout": "0.1"}` || md["ss_network_dropout"] != "0.1" {
		t.Errorf("metadata: dim %s alpha %s args %s dropout %s, want the configured arguments", md["ss_network_dim"], md["ss_network_alpha"],
			md["ss_network_args"], md["ss_network_dropout"])
	}

	// A UNet-only file: the text encoder gets no modules (its LR 0).
	c, lat2 := tinyRun(t, t.TempDir(), func(o *Options) { o.Epochs, o.SaveEveryNEpochs, o.TextEncoderLR = 1, 0, 0 })
	if err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	opt2 := a.Opt
	opt2.NetworkWeights, opt2.DimFromWeights = filepath.Join(c.Opt.OutputDir, "tiny.safetensors"), true
	models = tinyModels(t)
	notes, err = DimsFromWeights(&opt2, models)
	if err != nil {
		t.Fatal(err)
	}
	if _, te := opt2.LRs(); te != 0 || !strings.Contains(strings.Join(notes, "\n"), "no text-encoder modules") {
		t.Errorf("UNet-only file: text-encoder LR %g, notes %q", te, notes)
	}
	if _, err := New(opt2, a.Plan, models, lat2); err != nil {
		t.Fatal(err)
	}
	// A text-encoder-only run from it has nothing to train.
	opt3 := a.Opt
	opt3.NetworkWeights, opt3.DimFromWeights, opt3.UNetLR = opt2.NetworkWeights, true, 0
	if _, err := DimsFromWeights(&opt3, tinyModels(t)); err == nil || !strings.Contains(err.Error(), "no modules for the parts") {
		t.Errorf("TE-only run from a UNet-only file: %v", err)
	}

	// A file with ranks that differ between modules of one kind (a rank-3
	// cut of one Linear module, as a dynamic resize makes) and without its
	// last three UNet modules: the network takes exactly the file's modules
	// at their ranks, trains, and saves them so.
	var ts []safetensors.Tensor
	kept := map[string]int{}
	cut := ""
	var unet []string
	for _, fm := range src.Modules {
		if strings.HasPrefix(fm.Name, "lora_unet_") {
			unet = append(unet, fm.Name)
		}
	}
	drop := map[string]bool{}
	for _, n := range unet[len(unet)-3:] {
		drop[n] = true
	}
	for _, fm := range src.Modules {
		if drop[fm.Name] {
			continue
		}
		down, up, ds, us := fm.Down, fm.Up, fm.DownShape, fm.UpShape
		if cut == "" && len(ds) == 2 {
			cut = fm.Name
			r, in, out := ds[0], ds[1], us[0]
			down = down[:(r-1)*in]
			up = make([]float32, out*(r-1))
			for i := 0; i < out; i++ {
				copy(up[i*(r-1):(i+1)*(r-1)], fm.Up[i*r:i*r+r-1])
			}
			ds, us = []int{r - 1, in}, []int{out, r - 1}
		}
		kept[fm.Name] = ds[0]
		for _, x := range []struct {
			suffix string
			shape  []int
			v      []float32
		}{{".lora_down.weight", ds, down}, {".lora_up.weight", us, up}, {".alpha", nil, []float32{fm.Alpha}}} {
			st, err := safetensors.FromFloat32(fm.Name+x.suffix, safetensors.F32, x.shape, x.v)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, st)
		}
	}
	varied := filepath.Join(t.TempDir(), "varied.safetensors")
	if err := safetensors.WriteFile(varied, ts, map[string]string{"ss_network_module": "lycoris.kohya"}); err != nil {
		t.Fatal(err)
	}
	opt4 := a.Opt
	opt4.NetworkWeights, opt4.DimFromWeights, opt4.OutputDir, opt4.OutputName = varied, true, t.TempDir(), "varied"
	models = tinyModels(t)
	notes, err = DimsFromWeights(&opt4, models)
	if err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(notes, "\n"); !strings.Contains(all, "ranks differ") || !strings.Contains(all, "have no module in the file") {
		t.Errorf("notes %q, want the rank and coverage notes", notes)
	}
	if len(opt4.ModuleRanks) != len(kept) || opt4.ModuleRanks[cut] != kept[cut] {
		t.Fatalf("ModuleRanks has %d modules (%s at %d), want %d (%s at %d)", len(opt4.ModuleRanks), cut, opt4.ModuleRanks[cut], len(kept), cut, kept[cut])
	}
	d, err := New(opt4, a.Plan, models, lat)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err = lycoris.ReadFile(filepath.Join(opt4.OutputDir, "varied.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Modules) != len(kept) {
		t.Fatalf("%d modules saved, the file had %d", len(out.Modules), len(kept))
	}
	for _, om := range out.Modules {
		if r, ok := kept[om.Name]; !ok || om.Rank() != r {
			t.Fatalf("saved %s at rank %d, the file has it at %d (present %v)", om.Name, om.Rank(), r, ok)
		}
	}
}
