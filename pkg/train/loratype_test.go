package train

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// Module counts of the tiny models (traintest: SD 1.5's module tree, 16
// transformers; a 2-layer text encoder with 6 Linears per layer).
const (
	tinyTE       = 2 * 6
	tinyLoRAUNet = 16 * 12 // proj_in, proj_out, attn1/attn2 q/k/v/out, ff.net.0.proj, ff.net.2
	tiny2023UNet = 278
)

// TestImportGUIConfigKohyaTypes maps the GUI's "Standard" and "Kohya
// LoCon" to networks.lora with their layer sets and checks the network
// built from them (module counts) and the metadata sd-scripts would write.
func TestImportGUIConfigKohyaTypes(t *testing.T) {
	for _, tc := range []struct {
		name, json, preset string
		args               []string
		modules            int
		netArgs            string // "" = no ss_network_args
		convDim            int
		convAlpha          float64
		explain            []string
	}{
		{name: "standard", json: `{"LoRA_type": "Standard", "network_dim": 8, "network_alpha": 4, "conv_dim": 4, "conv_alpha": 2}`,
			preset: "lora", modules: tinyLoRAUNet + tinyTE,
			explain: []string{"networks.lora without network_args conv_dim", "conv_dim → ignored (Standard", "conv_alpha → ignored", "none: no conv_dim, so plain LoRA"}},
		{name: "standard-dropouts", json: `{"LoRA_type": "Standard", "network_dim": 8, "network_alpha": 4, "rank_dropout": 0.1, "module_dropout": "0", "network_dropout": 0.2}`,
			preset: "lora", args: []string{"rank_dropout=0.1"}, modules: tinyLoRAUNet + tinyTE,
			netArgs: `{"rank_dropout": "0.1", "dropout": 0.2}`},
		{name: "kohya-locon", json: `{"LoRA_type": "Kohya LoCon", "network_dim": 8, "network_alpha": 4, "conv_dim": 4, "conv_alpha": 2}`,
			preset: "2023", args: []string{"conv_dim=4", "conv_alpha=2"}, modules: tiny2023UNet + tinyTE, convDim: 4, convAlpha: 2,
			netArgs: `{"conv_dim": "4", "conv_alpha": "2", "dropout": null}`,
			explain: []string{"conv_dim → --conv-dim", "conv_dim=4 conv_alpha=2: Kohya LoCon (preset 2023"}},
		{name: "kohya-locon-gui-defaults", json: `{"LoRA_type": "Kohya LoCon", "network_dim": 8, "network_alpha": 4}`,
			preset: "2023", args: []string{"conv_dim=1", "conv_alpha=1"}, modules: tiny2023UNet + tinyTE, convDim: 1, convAlpha: 1,
			netArgs: `{"conv_dim": "1", "conv_alpha": "1", "dropout": null}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := ImportGUIConfig([]byte(tc.json), DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			o := g.Options
			if o.NetworkModule != "networks.lora" || o.Preset != tc.preset || o.Algo != "locon" || o.Tucker ||
				!slices.Equal(o.NetworkArgs, tc.args) || o.ConvDim != tc.convDim || o.ConvAlpha != tc.convAlpha {
				t.Errorf("options: module %s preset %s algo %s tucker %t args %q conv %d/%g; want networks.lora, %s, locon, no Tucker, %q, %d/%g",
					o.NetworkModule, o.Preset, o.Algo, o.Tucker, o.NetworkArgs, o.ConvDim, o.ConvAlpha, tc.preset, tc.args, tc.convDim, tc.convAlpha)
			}
			ex := strings.Join(g.Explain, "\n")
			for _, w := range tc.explain {
				if !matches(w, ex) {
					t.Errorf("explanation lacks %q:\n%s", w, ex)
				}
			}
			if len(g.Warnings) != 0 {
				t.Errorf("warnings %q", g.Warnings)
			}
			tr, _ := tinyRun(t, t.TempDir(), func(x *Options) {
				x.NetworkModule, x.Preset, x.Algo, x.NetworkArgs = o.NetworkModule, o.Preset, o.Algo, o.NetworkArgs
				x.NetworkDim, x.NetworkAlpha, x.ConvDim, x.ConvAlpha = o.NetworkDim, o.NetworkAlpha, o.ConvDim, o.ConvAlpha
				x.NetworkDropout, x.RankDropout, x.ModuleDropout = o.NetworkDropout, o.RankDropout, o.ModuleDropout
			})
			if len(tr.Net.Modules) != tc.modules {
				t.Errorf("%d modules, want %d", len(tr.Net.Modules), tc.modules)
			}
			k3 := 0
			for _, m := range tr.Net.Modules {
				if en, ok := tr.Net.Entry(m.Name + ".lora_down.weight"); ok && len(en.Shape) == 4 && en.Shape[2] > 1 {
					k3++
					if m.Rank != tc.convDim || m.Alpha != float32(tc.convAlpha) {
						t.Errorf("%s: rank %d alpha %g, want conv_dim %d conv_alpha %g", m.Name, m.Rank, m.Alpha, tc.convDim, tc.convAlpha)
					}
				} else if m.Rank != 8 || m.Alpha != 4 {
					t.Errorf("%s: rank %d alpha %g, want 8 and 4", m.Name, m.Rank, m.Alpha)
				}
			}
			if want := map[string]int{"lora": 0, "2023": 44 + 6}[tc.preset]; k3 != want {
				t.Errorf("%d 3×3 conv modules, want %d", k3, want)
			}
			md := tr.Metadata(1)
			if md["ss_network_module"] != "networks.lora" || md["ss_network_dim"] != "8" || md["ss_network_alpha"] != "4.0" {
				t.Errorf("metadata: module %q dim %q alpha %q", md["ss_network_module"], md["ss_network_dim"], md["ss_network_alpha"])
			}
			got, ok := md["ss_network_args"]
			if tc.netArgs == "" && ok {
				t.Errorf("ss_network_args %q, want none (no network_args)", got)
			} else if tc.netArgs != "" && got != tc.netArgs {
				t.Errorf("ss_network_args %q, want %q", got, tc.netArgs)
			}
		})
	}
}

// matches reports whether w occurs in s with runs of blanks in s read as
// one (the explanation pads its field names).
func matches(w, s string) bool {
	return strings.Contains(strings.Join(strings.Fields(s), " "), w)
}

// TestApplyNetworkModule: networks.lora from the command line, as
// sd-scripts reads its network_args.
func TestApplyNetworkModule(t *testing.T) {
	o := DefaultOptions()
	o.NetworkModule = "networks.lora"
	o.ConvDim, o.ConvAlpha = 4, 4
	if notes := o.ApplyNetworkModule(); len(notes) != 0 || o.Preset != "lora" || o.ConvDim != 0 || o.Validate() != nil {
		t.Errorf("no network_args: preset %s conv %d notes %q, error %v; want plain LoRA", o.Preset, o.ConvDim, notes, o.Validate())
	}
	if err := o.SetNetworkArgs([]string{"conv_dim=4"}); err != nil {
		t.Fatal(err)
	}
	if o.ApplyNetworkModule(); o.Preset != "2023" || o.ConvDim != 4 || o.ConvAlpha != 1 {
		t.Errorf("conv_dim=4: preset %s conv %d/%g, want 2023 and 4/1 (networks.lora's conv_alpha default)", o.Preset, o.ConvDim, o.ConvAlpha)
	}
	if err := o.SetNetworkArgs([]string{"conv_dim=4", "conv_alpha=2", "algo=loha", "preset=full", "use_tucker=True"}); err != nil {
		t.Fatal(err)
	}
	notes := o.ApplyNetworkModule()
	if o.Preset != "2023" || o.ConvAlpha != 2 || o.Algo != "locon" || o.Tucker || len(notes) != 2 ||
		!strings.Contains(notes[0], "ignores network_args algo=loha, preset=full, use_tucker=True") {
		t.Errorf("LyCORIS args: preset %s conv_alpha %g algo %s tucker %t notes %q", o.Preset, o.ConvAlpha, o.Algo, o.Tucker, notes)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
	// Back to lycoris.kohya: the preset left by networks.lora is LyCORIS' default.
	o.NetworkModule, o.NetworkArgs, o.Preset = "lycoris.kohya", nil, "lora"
	if o.ApplyNetworkModule(); o.Preset != "full" {
		t.Errorf("lycoris.kohya after plain LoRA: preset %s, want full", o.Preset)
	}
	for _, c := range []struct {
		module, preset, algo, want string
	}{
		{"networks.lora", "full", "locon", "networks.lora builds preset lora"},
		{"lycoris.kohya", "lora", "locon", "preset lora is kohya's plain LoRA"},
		{"networks.lora", "2023", "loha", "networks.lora has no LoHa"},
		{"lycoris.kohya", "attn", "locon", `preset "attn" is not supported (full, 2023, lora, attn-mlp`},
	} {
		o := DefaultOptions()
		o.NetworkModule, o.Preset, o.Algo = c.module, c.preset, c.algo
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s preset %s algo %s: %v, want an error with %q", c.module, c.preset, c.algo, err, c.want)
		}
	}
}

// TestStandardLoRARun trains a plain kohya LoRA (networks.lora without
// conv_dim) on the tiny models: the loss falls, and the saved file holds
// only the transformers' and the text encoder's modules under kohya's key
// names, no 3×3 conv, and no ss_network_args. --dim-from-weights then
// recognises the file as preset lora, from either module.
func TestStandardLoRARun(t *testing.T) {
	dir := t.TempDir()
	tr, lat := tinyRun(t, dir, func(o *Options) {
		o.NetworkModule, o.NetworkArgs = "networks.lora", nil
		o.ApplyNetworkModule()
		o.LearningRate, o.LRScheduler, o.LRWarmup = 3e-3, "constant", 0
		o.MultiresIterations, o.Epochs = 0, 1
	})
	losses := fixedBatchLosses(t, tr, 15)
	if !(losses[len(losses)-1] < 0.9*losses[0]) {
		t.Errorf("loss did not fall: %v", losses)
	}
	path := filepath.Join(dir, "standard.safetensors")
	if err := tr.Net.Save(path, safetensors.F16, tr.Metadata(1)); err != nil {
		t.Fatal(err)
	}
	f, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Modules) != tinyLoRAUNet+tinyTE {
		t.Errorf("%d modules saved, want %d", len(f.Modules), tinyLoRAUNet+tinyTE)
	}
	nonzero := false
	for _, m := range f.Modules {
		switch {
		case strings.HasPrefix(m.Name, "lora_te_text_model_encoder_layers_"):
		case strings.HasPrefix(m.Name, "lora_unet_") && strings.Contains(m.Name, "_attentions_"):
		default:
			t.Errorf("module %s is neither a transformer's nor the text encoder's", m.Name)
		}
		if len(m.DownShape) == 4 && (m.DownShape[2] != 1 || m.DownShape[3] != 1) {
			t.Errorf("%s: lora_down %v is not 1×1", m.Name, m.DownShape)
		}
		if m.Mid != nil || m.IsLoHa() || !m.HasAlpha || m.Alpha != 4 {
			t.Errorf("%s: not a plain LoRA module with alpha 4", m.Name)
		}
		for _, v := range m.Up {
			nonzero = nonzero || v != 0
		}
	}
	if !nonzero {
		t.Error("every lora_up is zero after training")
	}
	for name, shape := range map[string][]int{
		"lora_unet_down_blocks_0_attentions_0_proj_in":                             {8, 32, 1, 1},
		"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k":         {8, 32},
		"lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj":    {8, 32},
		"lora_unet_up_blocks_1_attentions_0_proj_out":                              {8, 128, 1, 1},
		"lora_te_text_model_encoder_layers_1_self_attn_out_proj":                   {8, 32},
		"lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_attn1_to_out_0": {8, 128},
	} {
		m, ok := f.Module(name)
		if !ok {
			t.Errorf("no module %s", name)
			continue
		}
		if !slices.Equal(m.DownShape, shape) {
			t.Errorf("%s.lora_down.weight: %v, want %v", name, m.DownShape, shape)
		}
	}
	if f.Metadata["ss_network_module"] != "networks.lora" {
		t.Errorf("ss_network_module %q", f.Metadata["ss_network_module"])
	}
	if v, ok := f.Metadata["ss_network_args"]; ok {
		t.Errorf("ss_network_args %q: sd-scripts writes none without network_args", v)
	}

	for _, c := range []struct {
		name string
		set  func(*Options)
	}{
		{"lycoris-full", func(o *Options) { o.NetworkModule, o.Preset, o.ConvDim, o.ConvAlpha = "lycoris.kohya", "full", 4, 4 }},
		{"kohya-locon", func(o *Options) {
			o.NetworkModule, o.NetworkArgs = "networks.lora", []string{"conv_dim=4", "conv_alpha=4"}
			o.ApplyNetworkModule()
		}},
	} {
		t.Run("dim-from-weights-"+c.name, func(t *testing.T) {
			opt := tr.Opt
			opt.NetworkArgs = nil
			c.set(&opt)
			opt.NetworkDim, opt.NetworkAlpha = 16, 1
			opt.NetworkWeights, opt.DimFromWeights = path, true
			opt.OutputDir = t.TempDir()
			models := tinyModels(t)
			notes, err := DimsFromWeights(&opt, models)
			if err != nil {
				t.Fatal(err)
			}
			if opt.Preset != "lora" || opt.NetworkDim != 8 || opt.NetworkAlpha != 4 || opt.ModuleRanks != nil ||
				!strings.Contains(strings.Join(notes, "\n"), "preset lora's set: preset lora") ||
				!strings.Contains(notes[0], "204 Linear/1×1 modules rank 8, alpha 4") || strings.Contains(notes[0], "k×k") {
				t.Errorf("preset %s dim %d alpha %g module ranks %v; notes %q", opt.Preset, opt.NetworkDim, opt.NetworkAlpha, opt.ModuleRanks != nil, notes)
			}
			b, err := New(opt, tr.Plan, models, lat)
			if err != nil {
				t.Fatal(err)
			}
			if b.Weights.Loaded != len(f.Modules) || len(b.Weights.Missing)+len(b.Weights.Unexpected) != 0 {
				t.Errorf("loaded %d of %d modules, missing %v, unexpected %v", b.Weights.Loaded, len(f.Modules), b.Weights.Missing, b.Weights.Unexpected)
			}
			md := b.Metadata(1)
			if md["ss_network_dim"] != "16" {
				t.Errorf("ss_network_dim %q, want the configured 16", md["ss_network_dim"])
			}
		})
	}
}

// TestImportGUIConfigKohyaAdditional: additional_parameters' --network_args
// replace the GUI's list (so Kohya LoCon without conv_dim there is plain
// LoRA), and --network_module networks.lora under a LyCORIS type gets the
// GUI's LyCORIS list, whose conv_dim makes it Kohya LoCon.
func TestImportGUIConfigKohyaAdditional(t *testing.T) {
	g, err := ImportGUIConfig([]byte(`{"LoRA_type": "Kohya LoCon", "conv_dim": 4, "additional_parameters": "--network_args rank_dropout=0.1"}`), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if o := g.Options; o.Preset != "lora" || !slices.Equal(o.NetworkArgs, []string{"rank_dropout=0.1"}) || o.RankDropout != 0.1 {
		t.Errorf("Kohya LoCon with --network_args rank_dropout=0.1: preset %s args %q rank_dropout %g", o.Preset, o.NetworkArgs, o.RankDropout)
	}
	g, err = ImportGUIConfig([]byte(`{"LoRA_type": "LyCORIS/LoCon", "network_dim": 8, "network_alpha": 4, "conv_dim": 4, "conv_alpha": 2, "additional_parameters": "--network_module networks.lora"}`), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := g.Options
	if o.NetworkModule != "networks.lora" || o.Preset != "2023" || o.ConvDim != 4 || o.ConvAlpha != 2 ||
		!slices.Equal(o.NetworkArgs, []string{"preset=full", "conv_dim=4", "conv_alpha=2", "algo=locon"}) {
		t.Errorf("LyCORIS/LoCon with --network_module networks.lora: module %s preset %s conv %d/%g args %q", o.NetworkModule, o.Preset, o.ConvDim, o.ConvAlpha, o.NetworkArgs)
	}
	if w := strings.Join(g.Warnings, "\n"); !strings.Contains(w, "networks.lora ignores network_args preset=full, algo=locon") {
		t.Errorf("warnings %q", g.Warnings)
	}
}

// TestImportGUIConfigLyCORISPresets maps LyCORIS_preset values other than
// full to loco presets (spec/locon.md §3.2): the network has their layers,
// ss_network_args records the preset, and the unet-* presets leave the
// text encoder untrained with a warning.
func TestImportGUIConfigLyCORISPresets(t *testing.T) {
	for _, tc := range []struct {
		preset  string
		modules int
		te      bool
	}{
		{"attn-mlp", tinyLoRAUNet + tinyTE, true},
		{"unet-transformer-only", tinyLoRAUNet, false},
		{"attn-only", 16*8 + 2*4, true},
		{"unet-only", 282, false},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			g, err := ImportGUIConfig([]byte(`{"LoRA_type": "LyCORIS/LoCon", "LyCORIS_preset": "`+tc.preset+`", "network_dim": 8, "network_alpha": 4, "conv_dim": 4, "conv_alpha": 4}`), DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			o := g.Options
			if o.Preset != tc.preset || o.NetworkModule != ModuleLyCORIS {
				t.Fatalf("preset %q module %q", o.Preset, o.NetworkModule)
			}
			if _, te := o.LRs(); (te > 0) != tc.te || tc.te == (strings.Join(g.Warnings, "\n") != "") {
				t.Errorf("text-encoder LR %g, warnings %q; want the text encoder trained: %v", te, g.Warnings, tc.te)
			}
			tr, _ := tinyRun(t, t.TempDir(), func(x *Options) {
				x.Preset, x.TextEncoderLR = o.Preset, o.TextEncoderLR
			})
			if len(tr.Net.Modules) != tc.modules {
				t.Errorf("%d modules, want %d", len(tr.Net.Modules), tc.modules)
			}
			if got := tr.Metadata(1)["ss_network_args"]; !strings.Contains(got, `"preset": "`+tc.preset+`"`) {
				t.Errorf("ss_network_args %q lacks the preset", got)
			}
		})
	}
}
