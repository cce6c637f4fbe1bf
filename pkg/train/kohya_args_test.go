package train

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{`--a 1 --b=2`, []string{"--a", "1", "--b=2"}},
		{"  --a\t1\n--b  ", []string{"--a", "1", "--b"}},
		{`--caption_prefix "photo of" --x 'it''s'`, []string{"--caption_prefix", "photo of", "--x", "its"}},
		{`--p='a "b" c'`, []string{`--p=a "b" c`}},
		{`--p="a \"b\" \\ \n $"`, []string{`--p=a "b" \ \n $`}},
		{`a\ b c\\d e\'f`, []string{"a b", `c\d`, "e'f"}},
		{`--e "" x`, []string{"--e", "", "x"}},
		{`--opt betas=(0.9,0.99)`, []string{"--opt", "betas=(0.9,0.99)"}},
		{"", nil},
	} {
		got, err := SplitArgs(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`--a "x`, `--a 'x`, `"`} {
		if _, err := SplitArgs(bad); err == nil || !strings.Contains(err.Error(), "unclosed") {
			t.Errorf("SplitArgs(%q): %v, want an unclosed-quote error", bad, err)
		}
	}
}

func TestParseSDFlags(t *testing.T) {
	fs, err := ParseSDFlags([]string{"--a", "1", "--b=x=y", "--flag", "--list", "k=1", "k2=2", "--neg", "-0.5", "-h"})
	if err != nil {
		t.Fatal(err)
	}
	want := []SDFlag{{Name: "a", Values: []string{"1"}}, {Name: "b", Values: []string{"x=y"}, Eq: true}, {Name: "flag"},
		{Name: "list", Values: []string{"k=1", "k2=2"}}, {Name: "neg", Values: []string{"-0.5"}}, {Name: "-h"}}
	if !reflect.DeepEqual(fs, want) {
		t.Errorf("got %+v\nwant %+v", fs, want)
	}
	for _, bad := range [][]string{{"x", "--a"}, {"--a=1", "2"}} {
		if _, err := ParseSDFlags(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestImportGUIConfigAdditionalParameters: the options of
// additional_parameters go through the same mapping as the fields, win
// over the field of the same name, and every one loco-train does not use
// is named in a warning.
func TestImportGUIConfigAdditionalParameters(t *testing.T) {
	raw := `{"LoRA_type": "LyCORIS/LoCon", "network_dim": 8, "network_alpha": 4, "conv_dim": 4, "conv_alpha": 4,
		"min_snr_gamma": 0, "max_grad_norm": 1, "shuffle_caption": false, "noise_offset_type": "Multires",
		"multires_noise_iterations": 6, "optimizer": "AdamW", "sample_prompts": "a cat", "sample_every_n_epochs": 1,
		"additional_parameters": "--caption_tag_dropout_rate 0.1 --min_snr_gamma=5 --no_half_vae --shuffle_caption --caption_prefix 'photo of' --optimizer_type=AdamW8bit --optimizer_args weight_decay=0.05 betas=(0.9,0.99) --max_grad_norm 0 --noise_offset 0.05 --network_dim 16 --lr_warmup 5 --frobnicate 3 --sample_prompts prompts.txt --network_train_unet_only"}`
	g, err := ImportGUIConfig([]byte(raw), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := g.Options
	if o.Captions.TagDropoutRate != 0.1 || o.MinSNRGamma != 5 || !o.Captions.Shuffle || o.Captions.Prefix != "photo of" ||
		o.WDecay != 0.05 || o.Beta2 != 0.99 || o.MaxGradNorm != 0 || o.Noise.Offset != 0.05 || o.MultiresIterations != 6 ||
		o.NetworkDim != 16 || o.NetworkAlpha != 4 || o.TextEncoderLR != 0 {
		t.Errorf("options %+v", o)
	}
	if g.Sample.PromptFile != "prompts.txt" || g.Sample.PromptText != "a cat" || g.Sample.EveryNEpochs == nil || *g.Sample.EveryNEpochs != 1 {
		t.Errorf("sample %+v", g.Sample)
	}
	explain := strings.Join(g.Explain, "\n")
	for _, want := range []string{
		"min_snr_gamma                  → --min-snr-gamma (0 = off) 5 [additional_parameters --min_snr_gamma=5]",
		"network_dim                    → --network-dim 16 [additional_parameters --network_dim 16]",
		"additional_parameters          → --min_snr_gamma=5: overrides the field min_snr_gamma",
		"additional_parameters          → --caption_tag_dropout_rate 0.1: sets caption_tag_dropout_rate",
		"optimizer                      → AdamW (AdamW8bit's 8-bit moments are kept in float32 by loco) [additional_parameters --optimizer_type=AdamW8bit]",
		"max_grad_norm                  → 0: no clipping",
	} {
		if !strings.Contains(explain, want) {
			t.Errorf("--explain lacks %q:\n%s", want, explain)
		}
	}
	warn := strings.Join(g.Warnings, "\n")
	for _, want := range []string{"--no_half_vae", "--frobnicate 3", "not options of sd-scripts' train_network.py (GUI fields the GUI turns into other options), ignored: --lr_warmup 5",
		`["photo of"] read as one word each`} {
		if !strings.Contains(warn, want) {
			t.Errorf("warnings lack %q:\n%s", want, warn)
		}
	}
	if strings.Contains(warn, "unknown fields") {
		t.Errorf("options of additional_parameters reported as unknown fields: %s", warn)
	}

	// --network_args replaces the GUI's list: conv_dim and conv_alpha fall
	// back to network_dim/alpha (LyCORIS) unless given.
	g, err = ImportGUIConfig([]byte(`{"LoRA_type": "LyCORIS/LoCon", "network_dim": 8, "network_alpha": 4, "conv_dim": 4, "conv_alpha": 2,
		"additional_parameters": "--network_args \"algo=locon\" use_tucker=True"}`), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if o := g.Options; o.ConvDim != 8 || o.ConvAlpha != 4 || !o.Tucker || strings.Join(o.NetworkArgs, " ") != "algo=locon use_tucker=True" {
		t.Errorf("network_args override: %+v", o)
	}

	// Refused values, as for the fields; malformed text.
	for _, c := range []struct{ params, want string }{
		{"--optimizer_type Lion", `optimizer "Lion" is not supported`},
		{"--v2", "v2 is true"},
		{"--min_snr_gamma=x", `min_snr_gamma: "x" is not a number`},
		{"--min_snr_gamma", "--min_snr_gamma needs a value"},
		{"--shuffle_caption=true", "--shuffle_caption takes no value"},
		{"--seed 1 2", "--seed takes one value"},
		{"--caption_prefix 'photo", "unclosed '"},
		{"0.1 --x", `"0.1" comes before any --option`},
		{"--network_args bypass_mode=True", "bypass_mode=True is not supported yet"},
		{"--network_module networks.oft", "--network_module networks.oft is not supported"},
		{"--dim_from_weights", "dim_from_weights needs network_weights"},
	} {
		raw, _ := jsonString(c.params)
		_, err := ImportGUIConfig([]byte(`{"LoRA_type": "LyCORIS/LoCon", "additional_parameters": `+raw+`}`), DefaultOptions())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.params, err, c.want)
		}
	}
}

func jsonString(s string) (string, error) { return pyJSONString(s), nil }
