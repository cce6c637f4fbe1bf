package train

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"loco/pkg/safetensors"
)

// RunInfo is the identity of a run written into every saved file.
type RunInfo struct {
	SessionID    uint32    // ss_session_id (derived from the seed: same seed, same file)
	StartedAt    time.Time // ss_training_started_at (kept across --resume)
	ModelName    string    // ss_sd_model_name: base checkpoint file name
	ModelHash    string    // ss_sd_model_hash: old A1111 hash (8 hex)
	NewModelHash string    // ss_new_sd_model_hash: sha256 of the file
	VAEName      string
}

func newRunInfo(seed uint64) RunInfo {
	return RunInfo{SessionID: uint32(mix(seed^0x5e55) >> 32)}
}

func saveDType(p string) (safetensors.DType, error) {
	switch p {
	case "fp16":
		return safetensors.F16, nil
	case "bf16":
		return safetensors.BF16, nil
	case "float", "fp32", "":
		return safetensors.F32, nil
	}
	return "", fmt.Errorf("save precision %q (fp16, bf16, float)", p)
}

// PyFloat formats v as Python's repr(float) does: shortest round-trip
// digits, scientific notation below 1e-4 and from 1e16, ".0" on integers.
func PyFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(v, 'e', -1, 64)
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	if v != 0 && (exp < -4 || exp >= 16) {
		if len(exps) > 0 && exps[0] == '+' {
			exps = exps[1:]
			return mant + "e+" + fmt.Sprintf("%02s", exps)
		}
		return mant + "e" + exps
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// pyJSONString is json.dumps of a string with ensure_ascii.
func pyJSONString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r > 0x7e:
			if r > 0xffff {
				r -= 0x10000
				fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// pyDict writes an ordered JSON object with Python's separators; values are
// already encoded.
func pyDict(keys, vals []string) string {
	parts := make([]string, len(keys))
	for i := range keys {
		parts[i] = pyJSONString(keys[i]) + ": " + vals[i]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// networkArgs returns the ss_network_args keys and values (strings, in the
// order given; for lycoris.kohya the defaults of the current GUI's order
// added when missing, for networks.lora only the args given, as the GUI
// lists them itself).
func (o *Options) networkArgs() ([]string, []string) {
	var keys, vals []string
	has := map[string]bool{}
	for _, a := range o.NetworkArgs {
		k, v, _ := strings.Cut(a, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if has[k] {
			continue
		}
		has[k] = true
		keys, vals = append(keys, k), append(vals, v)
	}
	if o.NetworkModule == ModuleKohyaLoRA {
		return keys, vals
	}
	add := func(k, v string) {
		if !has[k] {
			has[k] = true
			keys, vals = append(keys, k), append(vals, v)
		}
	}
	if o.Preset != "2023" {
		add("preset", o.Preset)
	}
	cd, ca := o.ConvDim, o.ConvAlpha
	if cd <= 0 {
		cd, ca = o.NetworkDim, o.NetworkAlpha
	}
	add("conv_dim", strconv.Itoa(cd))
	add("conv_alpha", trimFloat(ca))
	add("algo", o.Algo)
	if o.RankDropout > 0 {
		add("rank_dropout", trimFloat(o.RankDropout))
	}
	if o.ModuleDropout > 0 {
		add("module_dropout", trimFloat(o.ModuleDropout))
	}
	return keys, vals
}

// trimFloat writes 4 for 4.0 and 0.5 for 0.5 (network_args are strings as typed).
func trimFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func noneIfZero(v float64) string {
	if v == 0 {
		return "None"
	}
	return PyFloat(v)
}

// Metadata returns the ss_* and modelspec.* metadata of a save at the
// current step (spec/fileformat.md §2, §4).
func (t *Trainer) Metadata(epoch int) map[string]string {
	o, p := &t.Opt, t.Plan
	// The network keys record the arguments as configured, also when
	// --dim-from-weights built the network from a file's ranks (sd-scripts
	// writes args.network_dim, args.network_alpha and its network_args).
	nc := o
	if o.configured != nil {
		nc = o.configured
	}
	uLR, teLR := o.LRs()
	now := t.Clock()
	md := map[string]string{
		"ss_session_id":                     strconv.FormatUint(uint64(t.Meta.SessionID), 10),
		"ss_training_started_at":            PyFloat(float64(t.Meta.StartedAt.UnixMicro()) / 1e6),
		"ss_training_finished_at":           PyFloat(float64(now.UnixMicro()) / 1e6),
		"ss_output_name":                    o.OutputName,
		"ss_learning_rate":                  PyFloat(o.LearningRate),
		"ss_text_encoder_lr":                PyFloat(teLR),
		"ss_unet_lr":                        PyFloat(uLR),
		"ss_num_train_images":               strconv.Itoa(p.T),
		"ss_num_validation_images":          "0",
		"ss_num_reg_images":                 strconv.Itoa(p.RegRaw),
		"ss_num_batches_per_epoch":          strconv.Itoa(p.M),
		"ss_num_epochs":                     strconv.Itoa(p.LoopEpochs),
		"ss_gradient_checkpointing":         pyBool(o.GradientCheckpointing),
		"ss_gradient_accumulation_steps":    strconv.Itoa(p.GradAccum),
		"ss_max_train_steps":                strconv.Itoa(p.TotalSteps),
		"ss_lr_warmup_steps":                warmupString(o.LRWarmup),
		"ss_lr_scheduler":                   o.LRScheduler,
		"ss_network_module":                 o.NetworkModule,
		"ss_network_dim":                    strconv.Itoa(nc.NetworkDim),
		"ss_network_alpha":                  PyFloat(alphaOr(nc.NetworkAlpha, nc.NetworkDim)),
		"ss_network_dropout":                "None",
		"ss_mixed_precision":                o.MixedPrecision,
		"ss_full_fp16":                      "False",
		"ss_v2":                             "False",
		"ss_base_model_version":             "sd_v1",
		"ss_clip_skip":                      strconv.Itoa(o.ClipSkip),
		"ss_max_token_length":               tokenLen(o.MaxTokenLength),
		"ss_cache_latents":                  pyBool(o.CacheLatents),
		"ss_seed":                           strconv.FormatUint(o.Seed, 10),
		"ss_lowram":                         "False",
		"ss_noise_offset":                   noneIfZero(o.Noise.Offset),
		"ss_noise_offset_random_strength":   pyBool(o.Noise.RandomStrength),
		"ss_adaptive_noise_scale":           noneIfZero(o.Noise.Adaptive),
		"ss_multires_noise_iterations":      "None",
		"ss_multires_noise_discount":        PyFloat(o.MultiresDiscount),
		"ss_zero_terminal_snr":              "False",
		"ss_training_comment":               "None",
		"ss_sd_scripts_commit_hash":         "(unknown)",
		"ss_optimizer":                      o.optimizerString(),
		"ss_max_grad_norm":                  PyFloat(o.MaxGradNorm),
		"ss_caption_dropout_rate":           "0.0",
		"ss_caption_dropout_every_n_epochs": "0",
		"ss_caption_tag_dropout_rate":       "0.0",
		"ss_face_crop_aug_range":            "None",
		"ss_prior_loss_weight":              PyFloat(o.PriorLossWeight),
		"ss_min_snr_gamma":                  noneIfZero(o.MinSNRGamma),
		"ss_scale_weight_norms":             "None",
		"ss_ip_noise_gamma":                 "None",
		"ss_ip_noise_gamma_random_strength": "False",
		"ss_debiased_estimation":            "False",
		"ss_loss_type":                      "l2",
		"ss_huber_schedule":                 "snr",
		"ss_huber_c":                        "0.1",
		"ss_batch_size_per_device":          strconv.Itoa(p.BatchSize),
		"ss_total_batch_size":               strconv.Itoa(p.BatchSize * p.GradAccum),
		"ss_resolution":                     fmt.Sprintf("(%d, %d)", o.Resolution[0], o.Resolution[1]),
		"ss_color_aug":                      "False",
		"ss_flip_aug":                       pyBool(o.FlipAug),
		"ss_random_crop":                    "False",
		"ss_shuffle_caption":                "False",
		"ss_enable_bucket":                  pyBool(o.EnableBucket),
		"ss_bucket_no_upscale":              pyBool(o.NoUpscale),
		"ss_min_bucket_reso":                strconv.Itoa(o.MinBucketReso),
		"ss_max_bucket_reso":                strconv.Itoa(o.MaxBucketReso),
		"ss_keep_tokens":                    "0",
		"ss_steps":                          strconv.Itoa(t.Step),
		"ss_epoch":                          strconv.Itoa(epoch),
		"ss_sd_model_name":                  t.Meta.ModelName,
		"ss_sd_model_hash":                  t.Meta.ModelHash,
		"ss_new_sd_model_hash":              t.Meta.NewModelHash,

		"modelspec.sai_model_spec":  "1.0.0",
		"modelspec.architecture":    "stable-diffusion-v1/lora",
		"modelspec.implementation":  "diffusers",
		"modelspec.title":           o.OutputName,
		"modelspec.date":            time.Unix(now.Unix(), 0).In(now.Location()).Format("2006-01-02T15:04:05"),
		"modelspec.resolution":      fmt.Sprintf("%dx%d", o.Resolution[0], o.Resolution[1]),
		"modelspec.prediction_type": "epsilon",
		"modelspec.encoder_layer":   strconv.Itoa(o.ClipSkip),
	}
	if o.MultiresIterations > 0 {
		md["ss_multires_noise_iterations"] = strconv.Itoa(o.MultiresIterations)
	}
	if o.TrainingComment != "" {
		md["ss_training_comment"] = o.TrainingComment
	}
	if o.MinTimestep != 0 || o.MaxTimestep != 1000 {
		md["modelspec.timestep_range"] = fmt.Sprintf("%d,%d", o.MinTimestep, o.MaxTimestep)
	}
	if t.Meta.VAEName != "" {
		md["ss_vae_name"] = t.Meta.VAEName
	}
	k, v := nc.networkArgs()
	for i := range v {
		v[i] = pyJSONString(v[i])
	}
	// sd-scripts adds --network_dropout (a number, or null) as "dropout"
	// when the network args do not have it (not with --dim_from_weights,
	// whose branch passes the args as given).
	hasDropout := o.DimFromWeights
	for _, key := range k {
		hasDropout = hasDropout || key == "dropout"
	}
	// It writes ss_network_args only when --network_args were given: a
	// networks.lora run without them (the GUI's Standard) has none.
	if len(k) > 0 || nc.NetworkModule != ModuleKohyaLoRA {
		if !hasDropout {
			k, v = append(k, "dropout"), append(v, "null")
			if nc.NetworkDropout > 0 {
				v[len(v)-1] = PyFloat(nc.NetworkDropout)
			}
		}
		md["ss_network_args"] = pyDict(k, v)
	}
	if nc.NetworkDropout > 0 {
		md["ss_network_dropout"] = PyFloat(nc.NetworkDropout)
	}
	c := o.Captions
	md["ss_shuffle_caption"] = pyBool(c.Shuffle)
	md["ss_keep_tokens"] = strconv.Itoa(c.KeepTokens)
	md["ss_caption_dropout_rate"] = PyFloat(c.DropoutRate)
	md["ss_caption_dropout_every_n_epochs"] = strconv.Itoa(c.DropoutEveryNEpochs)
	md["ss_caption_tag_dropout_rate"] = PyFloat(c.TagDropoutRate)
	md["ss_dataset_dirs"], md["ss_reg_dataset_dirs"] = p.datasetDirs()
	md["ss_tag_frequency"] = p.tagFrequency()
	md["ss_bucket_info"] = p.bucketInfo()
	for key, val := range o.Metadata {
		md[key] = val
	}
	return md
}

func alphaOr(a float64, dim int) float64 {
	if a == 0 {
		return float64(dim)
	}
	return a
}

func warmupString(w float64) string {
	if w > 0 && w < 1 {
		return PyFloat(w)
	}
	return strconv.Itoa(int(w))
}

func tokenLen(n int) string {
	if n == 0 || n == 75 {
		return "None"
	}
	return strconv.Itoa(n)
}

func (o *Options) optimizerString() string {
	s := "torch.optim.adamw.AdamW"
	var args []string
	if o.WDecay != 0.01 {
		args = append(args, "weight_decay="+PyFloat(o.WDecay))
	}
	if o.Beta1 != 0.9 || o.Beta2 != 0.999 {
		args = append(args, fmt.Sprintf("betas=(%s, %s)", PyFloat(o.Beta1), PyFloat(o.Beta2)))
	}
	if o.Eps != 1e-8 {
		args = append(args, "eps="+PyFloat(o.Eps))
	}
	if len(args) > 0 {
		s += "(" + strings.Join(args, ",") + ")"
	}
	return s
}

// folders lists the concept folders in record order (train, then reg).
func (p *Plan) folders(reg bool) (names []string, repeats, counts map[string]int) {
	repeats, counts = map[string]int{}, map[string]int{}
	for _, it := range p.Items {
		if it.Rec.IsReg != reg {
			continue
		}
		name := it.Rec.Concept
		if name == "" {
			name = filepath.Base(filepath.Dir(it.Rec.Path))
		}
		if _, ok := counts[name]; !ok {
			names = append(names, name)
			repeats[name] = it.Rec.Repeats
		}
		counts[name]++
	}
	return names, repeats, counts
}

func (p *Plan) datasetDirs() (train, reg string) {
	enc := func(reg bool) string {
		names, rep, cnt := p.folders(reg)
		vals := make([]string, len(names))
		for i, n := range names {
			vals[i] = fmt.Sprintf(`{"n_repeats": %d, "img_count": %d}`, rep[n], cnt[n])
		}
		return pyDict(names, vals)
	}
	return enc(false), enc(true)
}

// tagFrequency is ss_tag_frequency: per folder, each caption's
// comma-separated tags (stripped, lower-cased) counted once per image.
func (p *Plan) tagFrequency() string {
	type folder struct {
		tags  []string
		count map[string]int
	}
	var order []string
	fs := map[string]*folder{}
	for _, reg := range []bool{false, true} {
		for _, it := range p.Items {
			if it.Rec.IsReg != reg {
				continue
			}
			name := it.Rec.Concept
			if name == "" {
				name = filepath.Base(filepath.Dir(it.Rec.Path))
			}
			f := fs[name]
			if f == nil {
				f = &folder{count: map[string]int{}}
				fs[name] = f
				order = append(order, name)
			}
			seen := map[string]bool{}
			for _, tag := range strings.Split(it.Rec.Caption, ",") {
				tag = strings.ToLower(strings.TrimSpace(tag))
				if tag == "" || seen[tag] {
					continue
				}
				seen[tag] = true
				if f.count[tag] == 0 {
					f.tags = append(f.tags, tag)
				}
				f.count[tag]++
			}
		}
	}
	vals := make([]string, len(order))
	for i, n := range order {
		f := fs[n]
		v := make([]string, len(f.tags))
		for j, tag := range f.tags {
			v[j] = strconv.Itoa(f.count[tag])
		}
		vals[i] = pyDict(f.tags, v)
	}
	return pyDict(order, vals)
}

func (p *Plan) bucketInfo() string {
	keys := make([]string, len(p.Buckets))
	vals := make([]string, len(p.Buckets))
	bs := append([]BucketCount(nil), p.Buckets...)
	sort.SliceStable(bs, func(i, j int) bool { return lessBucket(bs[i].Bucket, bs[j].Bucket) })
	for i, b := range bs {
		keys[i] = strconv.Itoa(i)
		vals[i] = fmt.Sprintf(`{"resolution": [%d, %d], "count": %d}`, b.Bucket[0], b.Bucket[1], b.Samples)
	}
	var sum float64
	n := 0
	for _, it := range p.Items {
		if it.Rec.AspectError != nil {
			sum += math.Abs(*it.Rec.AspectError)
			n++
		}
	}
	mean := 0.0
	if n > 0 {
		mean = sum / float64(n)
	}
	return `{"buckets": ` + pyDict(keys, vals) + `, "mean_img_ar_error": ` + PyFloat(mean) + "}"
}
