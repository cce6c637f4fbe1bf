package train

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// GUIConfig is the result of importing a kohya_ss GUI JSON config
// (spec/kohya-config.md).
type GUIConfig struct {
	Options  Options
	Epoch    int     // the GUI's "epoch" field (used by its step formula)
	MaxSteps int     // max_train_steps of the file (0 = let the GUI compute)
	WarmupPc float64 // lr_warmup (% of steps)
	Paths    map[string]string
	Explain  []string // one line per field: how it mapped, or why it was ignored
	Warnings []string
	// Sample holds the sample-image fields: the prompt box's text (or a
	// prompt file from additional_parameters' --sample_prompts) and the
	// schedule.
	Sample GUISample
	// Flags are the options of additional_parameters, in order.
	Flags []SDFlag

	fileHas map[string]bool // the file's own fields
}

// GUISample are the sample-image settings of a GUI config.
type GUISample struct {
	PromptText   string // sample_prompts: the text of the GUI's prompt box
	PromptFile   string // additional_parameters --sample_prompts FILE (wins over the text)
	Sampler      string // "" = not set
	EveryNEpochs *int
	EveryNSteps  *int
}

// guiIgnored are accepted silently (listed by --explain).
var guiIgnoredPrefixes = []string{"sdxl", "flux1", "sd3", "t5xxl", "clip_l", "clip_g", "anima_", "lumina_", "hunyuan_",
	"wandb", "log_tracker", "huggingface", "dynamo", "ae", "apply_t5", "blocks_to_swap", "cpu_offload", "fp8_base_unet"}

var guiIgnored = map[string]bool{
	"num_cpu_threads_per_process": true, "num_processes": true, "num_machines": true, "multi_gpu": true, "gpu_ids": true,
	"main_process_port": true, "extra_accelerate_launch_args": true, "xformers": true, "mem_eff_attn": true,
	"max_data_loader_n_workers": true, "persistent_data_loader_workers": true, "highvram": true, "lowvram": true,
	"log_with": true, "log_config": true, "model_list": true, "save_as_bool": true, "training_preset": true,
	"save_state_to_huggingface": true, "resume_from_huggingface": true, "async_upload": true, "use_wandb": true,
	"stop_text_encoder_training": true, "cache_latents": true, "cache_latents_to_disk": true, "vae_batch_size": true,
	"factor": true, "use_cp": true, "decompose_both": true, "train_on_input": true, "constrain": true, "rescaled": true, "unit": true,
	"sample_prompts": true, "sample_sampler": true, "sample_every_n_epochs": true, "sample_every_n_steps": true,
	"caption_extension": true, "train_data_dir": true, "reg_data_dir": true, "logging_dir": true, "output_dir": true,
	"pretrained_model_name_or_path": true, "vae": true, "max_bucket_reso": true, "min_bucket_reso": true, "bucket_reso_steps": true,
	"enable_bucket": true, "bucket_no_upscale": true, "max_resolution": true, "full_fp16": true, "full_bf16": true, "fp8_base": true,
	"use_8bit_adam":  true,
	"down_lr_weight": true, "mid_lr_weight": true, "up_lr_weight": true, "block_lr_zero_threshold": true,
	"block_dims": true, "block_alphas": true, "conv_block_dims": true, "conv_block_alphas": true, "conv_dims": true, "conv_alphas": true,
	"huber_c": true, "huber_schedule": true, "huber_scale": true,
	"save_last_n_steps_state": true, "save_last_n_epochs_state": true, "save_state_on_train_end": true,
	"save_every_n_steps": false, "metadata_title": false,
	// sd-scripts options with no effect on an SD 1.x LoCon run in loco
	// (met in additional_parameters).
	"no_half_vae": true, "sdpa": true, "lowram": true, "skip_cache_check": true,
}

// ImportGUIConfig reads a kohya_ss GUI LoRA-tab JSON config into Options
// (starting from base). Unknown keys are warned about; unsupported values
// and contradictions are errors naming every offending field.
func ImportGUIConfig(raw []byte, base Options) (*GUIConfig, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a kohya_ss GUI config (a flat JSON object): %v", err)
	}
	g := &GUIConfig{Options: base, Paths: map[string]string{}}
	o := &g.Options
	var errs []string
	used := map[string]bool{}
	// additional_parameters: its options replace the fields of the same
	// name before anything is read (they win, as in sd-scripts).
	fileKeys := make([]string, 0, len(m))
	g.fileHas = map[string]bool{}
	for k := range m {
		fileKeys = append(fileKeys, k)
		g.fileHas[k] = true
	}
	var ov *flagOverrides
	if s, ok := m["additional_parameters"].(string); ok && strings.TrimSpace(s) != "" {
		var err error
		if ov, err = applyAdditional(m, s); err != nil {
			errs = append(errs, "additional_parameters: "+err.Error())
		}
		if ov != nil {
			g.Flags = ov.flags
			if len(ov.spaced) > 0 {
				g.Warnings = append(g.Warnings, fmt.Sprintf("additional_parameters: %q read as one word each, as a shell does; the current GUI (2024 on) deletes double quotes and splits on blanks, so sd-scripts would get the words separately", ov.spaced))
			}
		}
	}
	fromFlag := func(k string) bool { return ov != nil && ov.src[k] != "" }
	explain := func(k, f string, a ...any) {
		g.Explain = append(g.Explain, fmt.Sprintf("%-30s → %s%s", k, fmt.Sprintf(f, a...), ov.from(k)))
	}
	has := func(k string) bool { _, ok := m[k]; return ok }
	str := func(k string) string {
		used[k] = true
		switch v := m[k].(type) {
		case string:
			return v
		case json.Number:
			return v.String()
		case bool:
			return strconv.FormatBool(v)
		}
		return ""
	}
	num := func(k string, bad float64) (float64, bool) {
		used[k] = true
		v, ok := m[k]
		if !ok {
			return 0, false
		}
		switch x := v.(type) {
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return bad, true
			}
			return f, true
		case string:
			if strings.TrimSpace(x) == "" {
				return 0, false
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return bad, true
			}
			return f, true
		case bool:
			if x {
				return 1, true
			}
			return 0, true
		}
		return bad, true
	}
	boolean := func(k string) bool {
		used[k] = true
		switch x := m[k].(type) {
		case bool:
			return x
		case string:
			return x == "true" || x == "True"
		case json.Number:
			return x.String() != "0"
		}
		return false
	}
	// Model family: must be SD 1.x.
	for _, k := range []string{"v2", "v_parameterization", "sdxl", "flux1_checkbox", "sd3_checkbox"} {
		if has(k) && boolean(k) {
			errs = append(errs, fmt.Sprintf("%s is true: loco trains SD 1.x only", k))
		}
	}
	// Network.
	lt := str("LoRA_type")
	switch lt {
	case "LyCORIS/LoCon", "LoCon", "":
		o.NetworkModule, o.Algo = "lycoris.kohya", "locon"
		explain("LoRA_type", "--network-module lycoris.kohya, algo=locon (%q)", lt)
	case "Kohya LoCon":
		o.NetworkModule, o.Algo = ModuleKohyaLoRA, "locon"
		explain("LoRA_type", "--network-module networks.lora --network-args conv_dim=… conv_alpha=… (kohya's LoCon: the UNet's transformers, ResBlocks and samplers, 278 layers as preset 2023, and the text encoder's 72)")
	case "Standard":
		o.NetworkModule, o.Algo = ModuleKohyaLoRA, "locon"
		explain("LoRA_type", "--network-module networks.lora without network_args conv_dim (kohya's plain LoRA: only the Linears and 1×1 convs of the UNet's 16 transformers, 192 layers as preset lora, and the text encoder's 72)")
	case "LyCORIS/LoHa":
		o.NetworkModule, o.Algo = "lycoris.kohya", "loha"
		explain("LoRA_type", "--network-module lycoris.kohya, algo=loha (%q)", lt)
	default:
		errs = append(errs, fmt.Sprintf("LoRA_type %q is not supported (LyCORIS/LoCon, LyCORIS/LoHa, Kohya LoCon, Standard)", lt))
	}
	if has("LyCORIS_preset") {
		switch p := str("LyCORIS_preset"); p {
		case "full", "":
			o.Preset = "full"
			explain("LyCORIS_preset", "--network-args preset=full")
		case "attn-mlp", "attn-only", "full-lin", "unet-only", "unet-transformer-only", "unet-convblock-only":
			o.Preset = p
			explain("LyCORIS_preset", "--network-args preset=%s", p)
		default:
			errs = append(errs, fmt.Sprintf("LyCORIS_preset %q is not supported (full, attn-mlp, attn-only, full-lin, unet-only, unet-transformer-only, unet-convblock-only)", p))
		}
	}
	setInt := func(k string, dst *int, flag string) {
		if v, ok := num(k, math.NaN()); ok {
			if math.IsNaN(v) {
				errs = append(errs, fmt.Sprintf("%s: %q is not a number", k, str(k)))
				return
			}
			*dst = int(v)
			explain(k, "%s %d", flag, *dst)
		}
	}
	setFloat := func(k string, dst *float64, flag string) {
		if v, ok := num(k, math.NaN()); ok {
			if math.IsNaN(v) {
				errs = append(errs, fmt.Sprintf("%s: %q is not a number", k, str(k)))
				return
			}
			*dst = v
			explain(k, "%s %g", flag, v)
		}
	}
	setInt("network_dim", &o.NetworkDim, "--network-dim")
	setFloat("network_alpha", &o.NetworkAlpha, "--network-alpha")
	if lt == "Standard" {
		for _, k := range []string{"conv_dim", "conv_alpha"} {
			if has(k) {
				used[k] = true
				explain(k, "ignored (Standard: the GUI passes no conv_dim/conv_alpha, so networks.lora wraps no 3×3 conv)")
			}
		}
	} else {
		setInt("conv_dim", &o.ConvDim, "--conv-dim (network_args conv_dim)")
		setFloat("conv_alpha", &o.ConvAlpha, "--conv-alpha (network_args conv_alpha)")
	}
	setFloat("network_dropout", &o.NetworkDropout, "--network-dropout (0 = off)")
	setFloat("rank_dropout", &o.RankDropout, "--network-args rank_dropout (0 = off)")
	setFloat("module_dropout", &o.ModuleDropout, "--network-args module_dropout (0 = off)")
	for _, k := range []string{"scale_weight_norms", "loraplus_lr_ratio"} {
		if v, ok := num(k, 0); ok && v != 0 {
			errs = append(errs, fmt.Sprintf("%s %g is not supported yet (set it to 0)", k, v))
		} else if ok {
			explain(k, "0 (off)")
		}
	}
	if has("use_tucker") {
		o.Tucker = boolean("use_tucker")
		explain("use_tucker", "--network-args use_tucker=%t", o.Tucker)
	}
	for _, k := range []string{"use_scalar", "rank_dropout_scale", "bypass_mode", "dora_wd", "train_norm"} {
		if has(k) {
			if boolean(k) {
				errs = append(errs, fmt.Sprintf("%s is true: not supported yet", k))
			} else {
				explain(k, "false (default)")
			}
		}
	}
	// Training.
	setInt("train_batch_size", &o.BatchSize, "--train-batch-size")
	var mte int
	setInt("epoch", &g.Epoch, "(GUI epochs, for its step formula) --max-train-epochs")
	setInt("max_train_epochs", &mte, "--max-train-epochs if > 0")
	setInt("max_train_steps", &g.MaxSteps, "--max-train-steps if > 0 (else the GUI computes a total)")
	if g.Epoch > 0 {
		o.Epochs = g.Epoch
	}
	if mte > 0 {
		o.Epochs = mte
	}
	if g.MaxSteps > 0 {
		o.MaxTrainSteps = g.MaxSteps
		g.Warnings = append(g.Warnings, fmt.Sprintf("max_train_steps %d is used as the total number of updates (train.md §12: the epochs then follow from it)", g.MaxSteps))
	}
	setInt("gradient_accumulation_steps", &o.GradAccum, "--gradient-accumulation-steps")
	var lr, telr, ulr float64
	lrSet := false
	if v, ok := num("learning_rate", 0); ok {
		lr, lrSet = v, true
	}
	telr, teSet := num("text_encoder_lr", 0)
	ulr, uSet := num("unet_lr", 0)
	if lrSet {
		o.LearningRate = lr
		explain("learning_rate", "--learning-rate %g", lr)
	}
	switch {
	case uSet && teSet && ulr == 0 && telr == 0 && lr == 0:
		errs = append(errs, "learning_rate, unet_lr and text_encoder_lr are all 0: nothing to train")
	case uSet && teSet && ulr == 0 && telr == 0:
		o.UNetLR, o.TextEncoderLR = -1, -1
		explain("unet_lr/text_encoder_lr", "both 0: learning_rate %g for both", lr)
	default:
		if teSet {
			o.TextEncoderLR = telr
			explain("text_encoder_lr", "--text-encoder-lr %g%s", telr, map[bool]string{true: " (0: UNet only)", false: ""}[telr == 0])
		}
		if uSet {
			o.UNetLR = ulr
			explain("unet_lr", "--unet-lr %g%s", ulr, map[bool]string{true: " (0: text encoder only)", false: ""}[ulr == 0])
		}
	}
	if has("lr_scheduler") {
		o.LRScheduler = str("lr_scheduler")
		explain("lr_scheduler", "--lr-scheduler %s", o.LRScheduler)
	}
	if v, ok := num("lr_warmup", 0); ok {
		g.WarmupPc = v
		o.LRWarmup = v / 100
		explain("lr_warmup", "--lr-warmup-steps %g (%g%% of the total, as the current GUI passes it)", o.LRWarmup, v)
	}
	if v, ok := num("lr_warmup_steps", 0); ok && (v > 0 || fromFlag("lr_warmup_steps")) {
		o.LRWarmup = v
		explain("lr_warmup_steps", "--lr-warmup-steps %g (wins over lr_warmup)", v)
	}
	if v, ok := num("lr_scheduler_num_cycles", 1); ok {
		o.NumCycles = v
		explain("lr_scheduler_num_cycles", "--lr-scheduler-num-cycles %g", v)
	} else if has("lr_scheduler_num_cycles") && o.Epochs > 0 {
		o.NumCycles = float64(o.Epochs)
		explain("lr_scheduler_num_cycles", "empty: the epoch count %d (as the GUI passes it)", o.Epochs)
	}
	if v, ok := num("lr_scheduler_power", 1); ok {
		o.Power = v
		explain("lr_scheduler_power", "--lr-scheduler-power %g", v)
	}
	for _, k := range []string{"lr_scheduler_type", "lr_scheduler_args"} {
		if s := str(k); s != "" {
			errs = append(errs, fmt.Sprintf("%s %q: custom schedulers are not supported", k, s))
		}
	}
	if has("optimizer") {
		switch opt := str("optimizer"); opt {
		case "AdamW":
			o.Optimizer = "AdamW"
			explain("optimizer", "--optimizer-type AdamW")
		case "AdamW8bit":
			o.Optimizer = "AdamW"
			explain("optimizer", "AdamW (AdamW8bit's 8-bit moments are kept in float32 by loco)")
			g.Warnings = append(g.Warnings, "optimizer AdamW8bit: loco uses AdamW with float32 moments (same hyper-parameters)")
		default:
			errs = append(errs, fmt.Sprintf("optimizer %q is not supported (AdamW, AdamW8bit)", opt))
		}
	} else if boolean("use_8bit_adam") {
		explain("use_8bit_adam", "AdamW (float32 moments)")
	}
	if s := strings.TrimSpace(str("optimizer_args")); s != "" {
		if err := o.SetOptimizerArgs(strings.Fields(s)); err != nil {
			errs = append(errs, "optimizer_args: "+err.Error())
		} else {
			explain("optimizer_args", "--optimizer-args %s", s)
		}
	}
	if v, ok := num("max_grad_norm", math.NaN()); ok {
		if v == 0 && fromFlag("max_grad_norm") {
			o.MaxGradNorm = 0
			explain("max_grad_norm", "0: no clipping (the command line passes 0, unlike the GUI field)")
		} else if v == 0 {
			o.MaxGradNorm = 1
			explain("max_grad_norm", "0 is dropped by the GUI: sd-scripts clips at 1.0, and so does loco")
		} else {
			o.MaxGradNorm = v
			explain("max_grad_norm", "--max-grad-norm %g", v)
		}
	}
	if has("mixed_precision") {
		o.MixedPrecision = str("mixed_precision")
		explain("mixed_precision", "--mixed-precision %s (the CPU computes in float32)", o.MixedPrecision)
	}
	if has("save_precision") {
		o.SavePrecision = str("save_precision")
		explain("save_precision", "--save-precision %s", o.SavePrecision)
	}
	if has("gradient_checkpointing") {
		o.GradientCheckpointing = boolean("gradient_checkpointing")
		explain("gradient_checkpointing", "--gradient-checkpointing=%t", o.GradientCheckpointing)
	}
	if v, ok := num("seed", 0); ok && v > 0 {
		o.Seed = uint64(v)
		explain("seed", "--seed %d", o.Seed)
	} else if has("seed") {
		explain("seed", "0/empty: a random seed (printed and stored in ss_seed)")
	}
	setInt("clip_skip", &o.ClipSkip, "--clip-skip")
	if v, ok := num("max_token_length", 75); ok {
		o.MaxTokenLength = int(v)
		explain("max_token_length", "--max-token-length %d", o.MaxTokenLength)
	}
	setFloat("prior_loss_weight", &o.PriorLossWeight, "--prior-loss-weight")
	setFloat("min_snr_gamma", &o.MinSNRGamma, "--min-snr-gamma (0 = off)")
	nt := str("noise_offset_type")
	if nt == "" {
		nt = "Original"
	}
	switch nt {
	case "Original":
		setFloat("noise_offset", &o.Noise.Offset, "--noise-offset")
		setFloat("adaptive_noise_scale", &o.Noise.Adaptive, "--adaptive-noise-scale")
		if has("noise_offset_random_strength") {
			o.Noise.RandomStrength = boolean("noise_offset_random_strength")
		}
		used["multires_noise_iterations"], used["multires_noise_discount"] = true, true
		explain("multires_noise_*", "ignored: noise_offset_type is Original")
	case "Multires":
		setInt("multires_noise_iterations", &o.MultiresIterations, "--multires-noise-iterations")
		setFloat("multires_noise_discount", &o.MultiresDiscount, "--multires-noise-discount")
		used["noise_offset"], used["adaptive_noise_scale"], used["noise_offset_random_strength"] = true, true, true
		explain("noise_offset", "ignored: noise_offset_type is Multires")
	default:
		errs = append(errs, fmt.Sprintf("noise_offset_type %q (Original, Multires)", nt))
	}
	explain("noise_offset_type", "%s", nt)
	// Options from additional_parameters reach sd-scripts whatever the
	// GUI's noise_offset_type; current sd-scripts applies offset and
	// multires noise together.
	if nt == "Multires" {
		if fromFlag("noise_offset") {
			setFloat("noise_offset", &o.Noise.Offset, "--noise-offset (with the multires noise)")
		}
		if fromFlag("adaptive_noise_scale") {
			setFloat("adaptive_noise_scale", &o.Noise.Adaptive, "--adaptive-noise-scale")
		}
		if fromFlag("noise_offset_random_strength") {
			o.Noise.RandomStrength = boolean("noise_offset_random_strength")
			explain("noise_offset_random_strength", "--noise-offset-random-strength=%t", o.Noise.RandomStrength)
		}
	} else {
		if fromFlag("multires_noise_iterations") {
			setInt("multires_noise_iterations", &o.MultiresIterations, "--multires-noise-iterations (with the offset noise)")
		}
		if fromFlag("multires_noise_discount") {
			setFloat("multires_noise_discount", &o.MultiresDiscount, "--multires-noise-discount")
		}
	}
	if v, ok := num("ip_noise_gamma", 0); ok && v != 0 {
		errs = append(errs, fmt.Sprintf("ip_noise_gamma %g is not supported yet", v))
	}
	setInt("min_timestep", &o.MinTimestep, "--min-timestep")
	setInt("max_timestep", &o.MaxTimestep, "--max-timestep")
	if lt := str("loss_type"); lt != "" && lt != "l2" {
		errs = append(errs, fmt.Sprintf("loss_type %q is not supported (l2)", lt))
	}
	for _, k := range []string{"debiased_estimation_loss", "scale_v_pred_loss_like_noise_pred", "masked_loss", "weighted_captions",
		"color_aug", "random_crop", "ip_noise_gamma_random_strength"} {
		if has(k) && boolean(k) {
			errs = append(errs, fmt.Sprintf("%s is true: not supported yet", k))
		}
	}
	if v, ok := num("v_pred_like_loss", 0); ok && v != 0 {
		errs = append(errs, "v_pred_like_loss is not supported")
	}
	if has("shuffle_caption") {
		o.Captions.Shuffle = boolean("shuffle_caption")
		explain("shuffle_caption", "--shuffle-caption=%t", o.Captions.Shuffle)
	}
	setInt("keep_tokens", &o.Captions.KeepTokens, "--keep-tokens")
	setFloat("caption_dropout_rate", &o.Captions.DropoutRate, "--caption-dropout-rate")
	setInt("caption_dropout_every_n_epochs", &o.Captions.DropoutEveryNEpochs, "--caption-dropout-every-n-epochs")
	setFloat("caption_tag_dropout_rate", &o.Captions.TagDropoutRate, "--caption-tag-dropout-rate")
	// Text options: "" means not set (the GUI drops empty values).
	for _, f := range []struct {
		key, flag string
		dst       *string
	}{{"caption_prefix", "--caption-prefix", &o.Captions.Prefix}, {"caption_suffix", "--caption-suffix", &o.Captions.Suffix},
		{"caption_separator", "--caption-separator", &o.Captions.Separator},
		{"secondary_separator", "--secondary-separator", &o.Captions.SecondarySeparator},
		{"keep_tokens_separator", "--keep-tokens-separator", &o.Captions.KeepTokensSeparator}} {
		if v := str(f.key); v != "" {
			*f.dst = v
			explain(f.key, "%s %q", f.flag, v)
		}
	}
	if has("enable_wildcard") {
		o.Captions.EnableWildcard = boolean("enable_wildcard")
		explain("enable_wildcard", "--enable-wildcard=%t (caption files' lines need loco-scan --enable-wildcard)", o.Captions.EnableWildcard)
	}
	if v, ok := num("token_warmup_min", math.NaN()); ok && v == 0 && !fromFlag("token_warmup_min") {
		explain("token_warmup_min", "0 is dropped by the GUI: sd-scripts' default 1")
	} else if ok {
		setInt("token_warmup_min", &o.Captions.TokenWarmupMin, "--token-warmup-min")
	}
	setFloat("token_warmup_step", &o.Captions.TokenWarmupStep, "--token-warmup-step")
	if has("flip_aug") {
		o.FlipAug = boolean("flip_aug")
		explain("flip_aug", "--flip-aug=%t (needs loco-encode --flip)", o.FlipAug)
	}
	setInt("save_every_n_epochs", &o.SaveEveryNEpochs, "--save-every-n-epochs")
	setInt("save_every_n_steps", &o.SaveEveryNSteps, "--save-every-n-steps")
	setInt("save_last_n_epochs", &o.SaveLastNEpochs, "--save-last-n-epochs (0 = keep all)")
	setInt("save_last_n_steps", &o.SaveLastNSteps, "--save-last-n-steps (0 = keep all)")
	if has("save_state") {
		o.SaveState = boolean("save_state")
		explain("save_state", "--save-state=%t", o.SaveState)
	}
	if s := str("resume"); s != "" {
		g.Paths["resume"] = s
		explain("resume", "--resume %s (a loco state file)", s)
	}
	if s := str("output_name"); s != "" {
		o.OutputName = s
		explain("output_name", "--output-name %s", s)
	}
	if has("training_comment") {
		o.TrainingComment = str("training_comment")
		explain("training_comment", "--training-comment %q", o.TrainingComment)
	}
	if s := str("save_model_as"); s != "" && s != "safetensors" {
		errs = append(errs, fmt.Sprintf("save_model_as %q: loco writes only safetensors", s))
	}
	if s := str("dataset_config"); s != "" {
		errs = append(errs, fmt.Sprintf("dataset_config %q: TOML dataset configs are not supported yet; use train_data_dir/reg_data_dir with loco-scan", s))
	}
	if s := str("max_resolution"); s != "" {
		var w, h int
		if _, err := fmt.Sscanf(strings.ReplaceAll(s, " ", ""), "%d,%d", &w, &h); err == nil {
			o.Resolution = [2]int{w, h}
			explain("max_resolution", "--resolution %d,%d (metadata; buckets come from loco-bucket -r)", w, h)
		}
	}
	if has("enable_bucket") {
		o.EnableBucket = boolean("enable_bucket")
	}
	if has("bucket_no_upscale") {
		o.NoUpscale = boolean("bucket_no_upscale")
	}
	if v, ok := num("min_bucket_reso", 0); ok {
		o.MinBucketReso = int(v)
	}
	if v, ok := num("max_bucket_reso", 0); ok {
		o.MaxBucketReso = int(v)
	}
	for _, k := range []string{"title", "author", "description", "license", "tags"} {
		if s := str("metadata_" + k); s != "" {
			if o.Metadata == nil {
				o.Metadata = map[string]string{}
			}
			o.Metadata["modelspec."+k] = s
			explain("metadata_"+k, "modelspec.%s", k)
		}
	}
	used["additional_parameters"] = true
	// Sample images (the GUI's prompt box is text; a --sample_prompts of
	// additional_parameters is a file).
	if s := str("sample_prompts"); strings.TrimSpace(s) != "" {
		g.Sample.PromptText = s
		explain("sample_prompts", "the prompt box's text (%d line(s)), as --sample-prompts", strings.Count(strings.TrimSpace(s), "\n")+1)
	}
	if s := str("sample_sampler"); s != "" {
		g.Sample.Sampler = s
		explain("sample_sampler", "--sample-sampler %s", s)
	}
	for _, f := range []struct {
		key string
		dst **int
	}{{"sample_every_n_epochs", &g.Sample.EveryNEpochs}, {"sample_every_n_steps", &g.Sample.EveryNSteps}} {
		if v, ok := num(f.key, math.NaN()); ok {
			if math.IsNaN(v) || v < 0 || v != math.Trunc(v) {
				errs = append(errs, fmt.Sprintf("%s: %q is not a whole number", f.key, str(f.key)))
				continue
			}
			n := int(v)
			*f.dst = &n
			explain(f.key, "--%s %d", strings.ReplaceAll(f.key, "_", "-"), n)
		}
	}
	for _, k := range []string{"pretrained_model_name_or_path", "train_data_dir", "reg_data_dir", "output_dir", "logging_dir", "vae", "network_weights", "lora_network_weights", "sample_prompts"} {
		if s := str(k); s != "" {
			g.Paths[k] = s
		}
	}
	for _, k := range []string{"network_weights", "lora_network_weights"} {
		if w := g.Paths[k]; w != "" {
			o.NetworkWeights = w
			explain(k, "--network-weights %s", w)
		}
	}
	if has("dim_from_weights") {
		o.DimFromWeights = boolean("dim_from_weights")
		if o.DimFromWeights {
			explain("dim_from_weights", "--dim-from-weights: ranks, alphas and layout from network_weights")
		} else {
			explain("dim_from_weights", "false (default)")
		}
	}
	if ov != nil {
		if ov.netModule != "" {
			switch ov.netModule {
			case "lycoris.kohya", "networks.lora":
				o.NetworkModule = ov.netModule
				explain("network_module", "--network-module %s [additional_parameters --network_module]", ov.netModule)
			default:
				errs = append(errs, fmt.Sprintf("additional_parameters --network_module %s is not supported (lycoris.kohya, networks.lora)", ov.netModule))
			}
		}
		if ov.setNetArgs {
			// sd-scripts takes the command line's list whole: the GUI's
			// conv_dim, conv_alpha, algo, preset ... are gone, and the
			// module's defaults apply (LyCORIS: conv_dim = network_dim,
			// conv_alpha = network_alpha, algo lora, preset full).
			o.Algo, o.Preset, o.Tucker, o.ConvDim, o.ConvAlpha, o.RankDropout, o.ModuleDropout = "locon", "full", false, 0, 0, 0, 0
			if err := o.SetNetworkArgs(ov.networkArg); err != nil {
				errs = append(errs, "additional_parameters --network_args: "+err.Error())
			}
			explain("network_args", "--network-args %s [additional_parameters: replaces the GUI's network_args]", strings.Join(ov.networkArg, " "))
			if o.ConvDim == 0 && o.NetworkModule != ModuleKohyaLoRA {
				o.ConvDim, o.ConvAlpha = o.NetworkDim, o.NetworkAlpha
			}
		}
		if ov.unetOnly && ov.teOnly {
			errs = append(errs, "additional_parameters: --network_train_unet_only and --network_train_text_encoder_only contradict each other")
		} else if ov.unetOnly {
			o.TextEncoderLR = 0
			explain("network_train_unet_only", "--network-train-unet-only [additional_parameters]")
		} else if ov.teOnly {
			o.UNetLR = 0
			explain("network_train_text_encoder_only", "--network-train-text-encoder-only [additional_parameters]")
		}
		if ov.promptFile != "" {
			g.Sample.PromptFile = ov.promptFile
			explain("sample_prompts", "--sample-prompts %s [additional_parameters: a prompt file, instead of the prompt box]", ov.promptFile)
		}
	}
	if o.ConvDim == 0 && lt != "Standard" {
		o.ConvDim, o.ConvAlpha = 1, 1 // the GUI's defaults
	}
	if o.NetworkModule == ModuleKohyaLoRA {
		if ov == nil || !ov.setNetArgs {
			o.NetworkArgs = guiKohyaNetworkArgs(lt, o)
		}
		g.Warnings = append(g.Warnings, o.ApplyNetworkModule()...)
		a := strings.Join(o.NetworkArgs, " ")
		if a == "" {
			a = "none"
		}
		if o.Preset == "lora" {
			explain("network_args", "%s: no conv_dim, so plain LoRA (preset lora, 192 UNet layers)", a)
		} else {
			explain("network_args", "%s: Kohya LoCon (preset 2023, 278 UNet layers)", a)
		}
	} else {
		g.Warnings = append(g.Warnings, o.ApplyNetworkModule()...)
	}
	// The rest: ignored (listed) or unknown (warned).
	keys := fileKeys
	sort.Strings(keys)
	var ignored, unknown []string
	for _, k := range keys {
		if used[k] {
			continue
		}
		if guiIgnored[k] || hasAnyPrefix(k, guiIgnoredPrefixes) {
			ignored = append(ignored, k)
			continue
		}
		if _, known := guiIgnored[k]; known {
			continue
		}
		unknown = append(unknown, k)
	}
	if len(ignored) > 0 {
		g.Explain = append(g.Explain, "ignored (no effect on loco-train, or handled by loco-scan/bucket/encode): "+strings.Join(ignored, ", "))
	}
	if len(unknown) > 0 {
		g.Warnings = append(g.Warnings, "unknown fields (ignored): "+strings.Join(unknown, ", "))
	}
	if ov != nil {
		errs = append(errs, g.explainFlags(ov, used)...)
	}
	if err := o.Validate(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return g, fmt.Errorf("kohya_ss config: %s", strings.Join(errs, "; "))
	}
	return g, nil
}

// guiKohyaNetworkArgs are the network_args the GUI passes to networks.lora
// for LoRA type lt: Kohya LoCon's conv_dim and conv_alpha (other types,
// run with networks.lora by additional_parameters --network_module, pass
// their LyCORIS list), then rank_dropout and module_dropout when not 0.
func guiKohyaNetworkArgs(lt string, o *Options) []string {
	var args []string
	switch lt {
	case "Standard":
	case "Kohya LoCon":
		args = append(args, "conv_dim="+strconv.Itoa(o.ConvDim), "conv_alpha="+trimFloat(o.ConvAlpha))
	default:
		ly := *o
		ly.NetworkModule, ly.NetworkArgs = ModuleLyCORIS, nil
		k, v := ly.networkArgs()
		for i := range k {
			args = append(args, k[i]+"="+v[i])
		}
		return args
	}
	if o.RankDropout > 0 {
		args = append(args, "rank_dropout="+trimFloat(o.RankDropout))
	}
	if o.ModuleDropout > 0 {
		args = append(args, "module_dropout="+trimFloat(o.ModuleDropout))
	}
	return args
}

func hasAnyPrefix(k string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// SetNetworkArgs parses sd-scripts' network_args as given on the command
// line ("key=value"): conv_dim, conv_alpha, algo, preset, use_tucker and
// the three dropouts; LyCORIS options loco lacks are refused unless off.
// It keeps args as NetworkArgs (for ss_network_args).
func (o *Options) SetNetworkArgs(args []string) error {
	o.NetworkArgs = args
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", a)
		}
		var err error
		switch k = strings.TrimSpace(k); k {
		case "conv_dim":
			if o.ConvDim, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("%s: conv_dim %q is not a whole number", a, v)
			}
		case "conv_alpha":
			if o.ConvAlpha, err = strconv.ParseFloat(v, 64); err != nil {
				return fmt.Errorf("%s: conv_alpha %q is not a number", a, v)
			}
		case "algo":
			o.Algo = v
		case "preset":
			o.Preset = v
		case "use_tucker":
			o.Tucker = v == "True" || v == "true" || v == "1"
		case "dropout", "rank_dropout", "module_dropout":
			p := map[string]*float64{"dropout": &o.NetworkDropout, "rank_dropout": &o.RankDropout, "module_dropout": &o.ModuleDropout}[k]
			if v == "None" || v == "" {
				*p = 0
			} else if *p, err = strconv.ParseFloat(v, 64); err != nil {
				return fmt.Errorf("%s: %s %q is not a number (or None)", a, k, v)
			}
		case "use_scalar", "bypass_mode", "dora_wd", "train_norm", "rank_dropout_scale":
			if v != "0" && v != "False" && v != "false" && v != "None" {
				return fmt.Errorf("%s=%s is not supported yet", k, v)
			}
		default:
			return fmt.Errorf("%s: unknown key %q (known: conv_dim, conv_alpha, algo, preset, use_tucker, dropout, rank_dropout, module_dropout)", a, k)
		}
	}
	return nil
}

// SetOptimizerArgs parses sd-scripts' optimizer_args ("key=value", Python
// literals): weight_decay, betas=(b1,b2), eps.
func (o *Options) SetOptimizerArgs(args []string) error {
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", a)
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "weight_decay":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("weight_decay %q is not a number", v)
			}
			o.WDecay = f
		case "eps":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("eps %q is not a number", v)
			}
			o.Eps = f
		case "betas":
			var b1, b2 float64
			if _, err := fmt.Sscanf(strings.NewReplacer("(", "", ")", "", "[", "", "]", "", " ", "").Replace(v), "%g,%g", &b1, &b2); err != nil {
				return fmt.Errorf("betas %q is not two numbers, e.g. betas=(0.9,0.999)", v)
			}
			o.Beta1, o.Beta2 = b1, b2
		default:
			return fmt.Errorf("optimizer argument %q is not supported (weight_decay, betas, eps)", k)
		}
	}
	return nil
}

// explainFlags adds an --explain line per option of additional_parameters
// (what it set) and a warning for each one loco-train ignores or does not
// know; a value-taking option given without value is an error.
func (g *GUIConfig) explainFlags(ov *flagOverrides, used map[string]bool) []string {
	var errs, ignored, unknown, notSD []string
	for i, f := range ov.flags {
		key := ov.keyOf[i]
		switch {
		case strings.HasPrefix(f.Name, "-"):
			unknown = append(unknown, f.String())
			continue
		case guiOnlyKeys[f.Name]:
			notSD = append(notSD, f.String())
			continue
		case key == "":
			continue // handled where it applies, or refused
		}
		if guiIgnored[key] {
			ignored = append(ignored, f.String())
			continue
		}
		if !used[key] {
			unknown = append(unknown, f.String())
			continue
		}
		if len(f.Values) == 0 && !sdBoolFlags[f.Name] {
			errs = append(errs, fmt.Sprintf("additional_parameters: --%s needs a value", f.Name))
			continue
		}
		what := "sets " + key
		if _, inFile := g.fileHas[key]; inFile {
			what = "overrides the field " + key
		}
		g.Explain = append(g.Explain, fmt.Sprintf("%-30s → %s", "additional_parameters", f.String()+": "+what))
	}
	if len(ignored) > 0 {
		g.Warnings = append(g.Warnings, "additional_parameters: ignored by loco-train (no effect here, or handled by loco-scan/bucket/encode): "+strings.Join(ignored, ", "))
	}
	if len(notSD) > 0 {
		g.Warnings = append(g.Warnings, "additional_parameters: not options of sd-scripts' train_network.py (GUI fields the GUI turns into other options), ignored: "+strings.Join(notSD, ", "))
	}
	if len(unknown) > 0 {
		g.Warnings = append(g.Warnings, "additional_parameters: options loco-train does not know, ignored: "+strings.Join(unknown, ", "))
	}
	return errs
}
