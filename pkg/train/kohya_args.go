package train

import (
	"fmt"
	"strconv"
	"strings"
)

// The kohya_ss GUI's additional_parameters field: free text of extra
// sd-scripts command-line flags, put after everything else the GUI passes
// (after --config_file <toml> in current GUIs, whose values the command
// line overrides; at the end of the command line in 2023 GUIs, where
// argparse keeps the last occurrence). Either way a flag given there wins
// over the config field of the same name.

// SplitArgs splits s into words as a POSIX shell does for a simple
// command line: blanks separate words; '…' keeps everything literally;
// "…" keeps everything but \" \\ \$ \` (a backslash before anything else
// stays); a backslash outside quotes makes the next character literal.
// There is no expansion of variables, globs or ~. An unclosed quote is
// an error.
func SplitArgs(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case r == '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			w.WriteString(string(rs[i+1 : j]))
			i = j
		case r == '"':
			inWord = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`\n", rs[j+1]) {
					j++
					if rs[j] != '\n' {
						w.WriteRune(rs[j])
					}
					continue
				}
				w.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unclosed \" in %q", s)
			}
			i = j
		case r == '\\':
			if i+1 < len(rs) {
				i++
				if rs[i] != '\n' { // backslash-newline joins lines
					inWord = true
					w.WriteRune(rs[i])
				}
			}
		default:
			inWord = true
			w.WriteRune(r)
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// SDFlag is one option of an sd-scripts command line.
type SDFlag struct {
	Name   string   // without the leading "--", e.g. "min_snr_gamma"
	Values []string // the words after it (one when written --name=value)
	Eq     bool     // written --name=value
}

func (f SDFlag) String() string {
	if len(f.Values) == 0 {
		return "--" + f.Name
	}
	vs := make([]string, len(f.Values))
	for i, v := range f.Values {
		vs[i] = shellQuote(v)
	}
	if f.Eq {
		return "--" + f.Name + "=" + vs[0]
	}
	return "--" + f.Name + " " + strings.Join(vs, " ")
}

// shellQuote writes v so that SplitArgs reads it back as one word.
func shellQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r'\"\\$`") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// ParseSDFlags groups words into options as argparse reads them: a word
// starting with "--" starts an option ("--name=value" carries its value),
// the words up to the next option are its values (a negative number is a
// value). A value before any option, or after a --name=value, is an error.
func ParseSDFlags(words []string) ([]SDFlag, error) {
	var fs []SDFlag
	for _, w := range words {
		isNum := false
		if _, err := strconv.ParseFloat(w, 64); err == nil {
			isNum = true
		}
		if strings.HasPrefix(w, "-") && len(w) > 1 && !isNum {
			name, val, eq := strings.Cut(strings.TrimPrefix(w, "--"), "=")
			if !strings.HasPrefix(w, "--") {
				name = w // a short option: sd-scripts has none but -h
			}
			f := SDFlag{Name: name, Eq: eq}
			if eq {
				f.Values = []string{val}
			}
			fs = append(fs, f)
			continue
		}
		if len(fs) == 0 {
			return nil, fmt.Errorf("%q comes before any --option", w)
		}
		last := &fs[len(fs)-1]
		if last.Eq {
			return nil, fmt.Errorf("%q after %s: one value per option", w, last)
		}
		last.Values = append(last.Values, w)
	}
	return fs, nil
}

// sdBoolFlags are sd-scripts' store_true options (no value).
var sdBoolFlags = map[string]bool{
	"shuffle_caption": true, "flip_aug": true, "color_aug": true, "random_crop": true, "gradient_checkpointing": true,
	"noise_offset_random_strength": true, "enable_wildcard": true, "save_state": true, "save_state_on_train_end": true,
	"dim_from_weights": true, "network_train_unet_only": true, "network_train_text_encoder_only": true, "v2": true,
	"v_parameterization": true, "debiased_estimation_loss": true, "masked_loss": true, "weighted_captions": true,
	"scale_v_pred_loss_like_noise_pred": true, "ip_noise_gamma_random_strength": true, "cache_latents": true,
	"cache_latents_to_disk": true, "xformers": true, "sdpa": true, "mem_eff_attn": true, "no_half_vae": true,
	"full_fp16": true, "full_bf16": true, "fp8_base": true, "lowram": true, "highvram": true,
	"persistent_data_loader_workers": true, "enable_bucket": true, "bucket_no_upscale": true, "sample_at_first": true,
	"no_metadata": true, "zero_terminal_snr": true, "use_8bit_adam": true, "use_lion_optimizer": true,
}

// sdListFlags take several values (nargs="*").
var sdListFlags = map[string]bool{"network_args": true, "optimizer_args": true, "text_encoder_lr": true,
	"lr_scheduler_args": true, "base_weights": true, "base_weights_multiplier": true}

// sdFlagKey is the GUI field of an sd-scripts option whose name differs.
var sdFlagKey = map[string]string{"optimizer_type": "optimizer", "resolution": "max_resolution"}

// guiOnlyKeys are GUI fields with no sd-scripts option of the same name
// (the GUI turns them into other options), or whose option means
// something else (sample_prompts: a file on the command line, the text in
// the GUI).
var guiOnlyKeys = map[string]bool{
	"LoRA_type": true, "LyCORIS_preset": true, "epoch": true, "lr_warmup": true, "conv_dim": true, "conv_alpha": true,
	"rank_dropout": true, "module_dropout": true, "use_tucker": true, "use_cp": true, "use_scalar": true,
	"rank_dropout_scale": true, "bypass_mode": true, "dora_wd": true, "train_norm": true, "noise_offset_type": true,
	"max_resolution": true, "optimizer": true, "additional_parameters": true, "lora_network_weights": true,
	"use_wandb": true, "save_as_bool": true, "model_list": true, "training_preset": true, "sdxl": true,
	"flux1_checkbox": true, "sd3_checkbox": true, "stop_text_encoder_training": true, "factor": true,
	"decompose_both": true, "train_on_input": true, "constrain": true, "rescaled": true, "unit": true,
	"down_lr_weight": true, "mid_lr_weight": true, "up_lr_weight": true, "block_lr_zero_threshold": true,
	"block_dims": true, "block_alphas": true, "conv_block_dims": true, "conv_block_alphas": true,
	"conv_dims": true, "conv_alphas": true,
}

// flagOverrides is what additional_parameters adds to the GUI fields.
type flagOverrides struct {
	src        map[string]string // GUI key → the flag that set it ("--min_snr_gamma=5")
	flags      []SDFlag
	keyOf      []string // GUI key of flags[i] ("" for the special ones)
	networkArg []string // --network_args (replaces the GUI's whole list)
	netModule  string   // --network_module
	unetOnly   bool     // --network_train_unet_only
	teOnly     bool     // --network_train_text_encoder_only
	promptFile string   // --sample_prompts (a file)
	setNetArgs bool
	spaced     []string // values with blanks (quoted)
}

// from says where GUI key k's value came from, for --explain.
func (ov *flagOverrides) from(k string) string {
	if ov == nil || ov.src[k] == "" {
		return ""
	}
	return " [additional_parameters " + ov.src[k] + "]"
}

// applyAdditional parses additional_parameters and writes the values of
// its options into m under their GUI keys (sd-scripts' names, two
// aliased). Options that are not GUI fields but that loco-train handles
// (network_args, network_module, network_train_*_only, sample_prompts)
// are returned for the caller. Malformed text is an error.
func applyAdditional(m map[string]any, text string) (*flagOverrides, error) {
	words, err := SplitArgs(text)
	if err != nil {
		return nil, err
	}
	fs, err := ParseSDFlags(words)
	if err != nil {
		return nil, err
	}
	ov := &flagOverrides{src: map[string]string{}, flags: fs}
	for _, w := range words {
		if strings.ContainsAny(w, " \t\n") {
			ov.spaced = append(ov.spaced, w)
		}
	}
	var errs []string
	for _, f := range fs {
		key := f.Name
		if k, ok := sdFlagKey[key]; ok {
			key = k
		}
		switch {
		case sdBoolFlags[f.Name] && len(f.Values) > 0:
			errs = append(errs, fmt.Sprintf("%s: --%s takes no value", f, f.Name))
			key = ""
		case len(f.Values) > 1 && !sdListFlags[f.Name]:
			errs = append(errs, fmt.Sprintf("%s: --%s takes one value", f, f.Name))
			key = ""
		case len(f.Values) == 0 && (sdListFlags[f.Name] || f.Name == "network_module" || f.Name == "sample_prompts"):
			errs = append(errs, fmt.Sprintf("--%s needs a value", f.Name))
			key = ""
		}
		if key == "" || strings.HasPrefix(f.Name, "-") || guiOnlyKeys[f.Name] {
			ov.keyOf = append(ov.keyOf, "")
			continue
		}
		switch f.Name {
		case "network_args":
			ov.networkArg, ov.setNetArgs = f.Values, true
			key = ""
		case "network_module":
			ov.netModule, key = f.Values[0], ""
		case "network_train_unet_only":
			ov.unetOnly, key = true, ""
		case "network_train_text_encoder_only":
			ov.teOnly, key = true, ""
		case "sample_prompts":
			ov.promptFile, key = f.Values[0], ""
		case "optimizer_args", "lr_scheduler_args":
			m[key] = strings.Join(f.Values, " ")
		case "text_encoder_lr":
			// A list (one LR per text encoder); SD 1.x has one: the first.
			m[key] = f.Values[0]
		default:
			if len(f.Values) == 0 {
				m[key] = true
			} else {
				m[key] = f.Values[0]
			}
		}
		if key != "" {
			ov.src[key] = f.String()
		}
		ov.keyOf = append(ov.keyOf, key)
	}
	if len(errs) > 0 {
		return ov, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return ov, nil
}
