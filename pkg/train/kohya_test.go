package train

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestImportGUIConfigRecipe(t *testing.T) {
	raw, err := os.ReadFile("testdata/recipe-gui.json")
	if err != nil {
		t.Fatal(err)
	}
	g, err := ImportGUIConfig(raw, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := g.Options
	u, te := o.LRs()
	if o.NetworkDim != 8 || o.NetworkAlpha != 4 || o.ConvDim != 4 || o.ConvAlpha != 4 || o.BatchSize != 3 || o.Epochs != 4 ||
		o.GradAccum != 12 || u != 1e-4 || te != 1e-4 || o.LRScheduler != "cosine" || o.LRWarmup != 0.1 ||
		o.MultiresIterations != 10 || o.MultiresDiscount != 0.1 || o.Noise.Offset != 0 || o.SavePrecision != "fp16" ||
		o.MixedPrecision != "fp16" || o.TrainingComment != "trigger: pralyco" || o.OutputName != "pralyco" || o.Optimizer != "AdamW" {
		t.Errorf("recipe imported as %+v", o)
	}
	// The same plan as the flags of the recipe.
	f := DefaultOptions()
	f.NetworkDim, f.NetworkAlpha, f.ConvDim, f.ConvAlpha = 8, 4, 4, 4
	f.BatchSize, f.Epochs, f.GradAccum = 3, 4, 12
	recs := recipeRecords(20, 40, [2]int{512, 512})
	p1, _ := NewPlan(recs, "latent_key", o.BatchSize, o.GradAccum, o.Epochs, o.MaxTrainSteps)
	p2, _ := NewPlan(recs, "latent_key", f.BatchSize, f.GradAccum, f.Epochs, f.MaxTrainSteps)
	if p1.TotalSteps != p2.TotalSteps || p1.TotalSteps != 136 || p1.GUISteps != 134 {
		t.Errorf("plans: %d and %d steps (GUI %d)", p1.TotalSteps, p2.TotalSteps, p1.GUISteps)
	}
	ex := strings.Join(g.Explain, "\n")
	for _, want := range []string{"--multires-noise-iterations 10", "--network-dim 8", "ignored", "xformers"} {
		if !strings.Contains(ex, want) {
			t.Errorf("explanation lacks %q:\n%s", want, ex)
		}
	}
}

func TestImportGUIConfigBad(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"LoRA_type": "LyCORIS/LoKr"}`, "LoRA_type"},
		{`{"sdxl": true, "optimizer": "Prodigy"}`, "SD 1.x only; optimizer \"Prodigy\""},
		{`{"learning_rate": 0, "unet_lr": 0, "text_encoder_lr": 0}`, "all 0"},
		{`{"network_dim": "eight"}`, "network_dim"},
		{`{"noise_offset_type": "Pyramid"}`, "noise_offset_type"},
		{`{"lr_scheduler": "constant", "lr_warmup_steps": 5}`, "warmup"},
		{`[1, 2]`, "flat JSON object"},
	} {
		_, err := ImportGUIConfig([]byte(c.json), DefaultOptions())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.json, err, c.want)
		}
	}
	loha, err := ImportGUIConfig([]byte(`{"LoRA_type": "LyCORIS/LoHa"}`), DefaultOptions())
	if err != nil || loha.Options.Algo != "loha" {
		t.Errorf("LyCORIS/LoHa: algo %q, error %v", loha.Options.Algo, err)
	}
	g, err := ImportGUIConfig([]byte(`{"network_dim": "16", "learning_rate": "0.0001", "my_new_field": 3, "sdxl_cache_text_encoder_outputs": true}`), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if g.Options.NetworkDim != 16 || len(g.Warnings) != 1 || !strings.Contains(g.Warnings[0], "my_new_field") {
		t.Errorf("string numbers / unknown fields: dim %d, warnings %q", g.Options.NetworkDim, g.Warnings)
	}
}

func TestSetNetworkArgs(t *testing.T) {
	o := DefaultOptions()
	args := []string{"conv_dim=4", "conv_alpha=2.5", "algo=loha", "preset=2023", "use_tucker=True", "dropout=0.1", "rank_dropout=None", "module_dropout=0.2", "bypass_mode=False"}
	if err := o.SetNetworkArgs(args); err != nil {
		t.Fatal(err)
	}
	if o.ConvDim != 4 || o.ConvAlpha != 2.5 || o.Algo != "loha" || o.Preset != "2023" || !o.Tucker ||
		o.NetworkDropout != 0.1 || o.RankDropout != 0 || o.ModuleDropout != 0.2 || len(o.NetworkArgs) != len(args) {
		t.Errorf("parsed %+v", o)
	}
	for _, c := range []struct{ arg, msg string }{
		{"conv_dim", `"conv_dim" is not key=value`},
		{"conv_dim=x", `conv_dim=x: conv_dim "x" is not a whole number`},
		{"conv_alpha=1,5", `conv_alpha=1,5: conv_alpha "1,5" is not a number`},
		{"rank_dropout=low", `rank_dropout=low: rank_dropout "low" is not a number (or None)`},
		{"dora_wd=True", `dora_wd=True is not supported yet`},
		{"conv_rank=4", `conv_rank=4: unknown key "conv_rank"`},
	} {
		t.Run(c.arg, func(t *testing.T) {
			o := DefaultOptions()
			err := o.SetNetworkArgs([]string{"conv_dim=2", c.arg})
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("SetNetworkArgs(%q) = %v, want an error with %q", c.arg, err, c.msg)
			}
		})
	}
}

func TestSetOptimizerArgs(t *testing.T) {
	o := DefaultOptions()
	if err := o.SetOptimizerArgs([]string{"weight_decay=0.05", "betas=(0.8, 0.99)", "eps=1e-6"}); err != nil {
		t.Fatal(err)
	}
	if o.WDecay != 0.05 || o.Beta1 != 0.8 || o.Beta2 != 0.99 || o.Eps != 1e-6 {
		t.Errorf("parsed weight decay %g, betas %g %g, eps %g", o.WDecay, o.Beta1, o.Beta2, o.Eps)
	}
	for _, c := range []struct{ arg, msg string }{
		{"weight_decay", `"weight_decay" is not key=value`},
		{"weight_decay=x", `weight_decay "x" is not a number`},
		{"eps=tiny", `eps "tiny" is not a number`},
		{"betas=0.9", `betas "0.9" is not two numbers`},
		{"momentum=0.9", `optimizer argument "momentum" is not supported`},
	} {
		t.Run(c.arg, func(t *testing.T) {
			o := DefaultOptions()
			err := o.SetOptimizerArgs([]string{c.arg})
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("SetOptimizerArgs(%q) = %v, want an error with %q", c.arg, err, c.msg)
			}
		})
	}
}

// FuzzImportGUIConfig feeds arbitrary bytes to the kohya_ss GUI config
// import (outside input): it must return an error or options, never panic,
// and a config it accepts must import the same way twice.
func FuzzImportGUIConfig(f *testing.F) {
	raw, err := os.ReadFile("testdata/recipe-gui.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"network_dim": 4, "optimizer_args": "betas=(0.9,0.99) eps=1e-8", "lr_warmup": 10}`))
	f.Add([]byte(`{"max_resolution": "512,512", "network_args": "conv_dim=4"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ImportGUIConfig(b, DefaultOptions())
		if err != nil {
			return
		}
		again, err := ImportGUIConfig(b, DefaultOptions())
		if err != nil {
			t.Fatalf("accepted once, then: %v", err)
		}
		if !reflect.DeepEqual(g.Options, again.Options) {
			t.Fatalf("two imports of the same config differ:\n%+v\n%+v", g.Options, again.Options)
		}
	})
}

// TestImportGUIConfigCaptionText: the caption text options map to
// CaptionOptions; "" is "not set" and token_warmup_min 0 is dropped by the
// GUI (sd-scripts' default 1 applies); bad values are errors naming the key.
func TestImportGUIConfigCaptionText(t *testing.T) {
	raw := `{"caption_prefix": "photo of", "caption_suffix": "", "caption_separator": ";", "secondary_separator": ";;;",
		"keep_tokens_separator": "|||", "enable_wildcard": true, "token_warmup_min": "0", "token_warmup_step": "0.25", "shuffle_caption": true}`
	g, err := ImportGUIConfig([]byte(raw), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := CaptionOptions{Shuffle: true, Prefix: "photo of", Separator: ";", SecondarySeparator: ";;;", KeepTokensSeparator: "|||",
		EnableWildcard: true, TokenWarmupMin: 1, TokenWarmupStep: 0.25}
	if !reflect.DeepEqual(g.Options.Captions, want) {
		t.Errorf("captions imported as %+v, want %+v", g.Options.Captions, want)
	}
	if w := strings.Join(g.Warnings, "\n"); strings.Contains(w, "unknown") {
		t.Errorf("warnings: %s", w)
	}
	ex := strings.Join(g.Explain, "\n")
	for _, s := range []string{`--caption-prefix "photo of"`, `--keep-tokens-separator "|||"`, "--enable-wildcard=true", "--token-warmup-step 0.25",
		"0 is dropped by the GUI"} {
		if !strings.Contains(ex, s) {
			t.Errorf("explanation lacks %q:\n%s", s, ex)
		}
	}
	g, err = ImportGUIConfig([]byte(`{"token_warmup_min": 3, "token_warmup_step": 8}`), DefaultOptions())
	if err != nil || g.Options.Captions.TokenWarmupMin != 3 || g.Options.Captions.TokenWarmupStep != 8 {
		t.Errorf("token warm-up 3/8: %+v, %v", g.Options.Captions, err)
	}
	for raw, msg := range map[string]string{
		`{"token_warmup_step": -2}`:       "token_warmup_step -2 must be 0",
		`{"token_warmup_min": "x"}`:       `token_warmup_min: "x" is not a number`,
		`{"secondary_separator": ","}`:    `secondary_separator "," is the caption_separator`,
		`{"token_warmup_step": "lots"}`:   `token_warmup_step: "lots" is not a number`,
		`{"caption_tag_dropout_rate": 2}`: "caption_tag_dropout_rate 2 must be in [0, 1)",
	} {
		if _, err := ImportGUIConfig([]byte(raw), DefaultOptions()); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want %q", raw, err, msg)
		}
	}
}
