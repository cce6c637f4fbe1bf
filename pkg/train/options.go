package train

import (
	"fmt"
	"strings"

	"loco/pkg/lycoris"
)

// Options are the settings of a run, named after sd-scripts' arguments
// (spec/train.md, spec/kohya-config.md). Zero values are not always the
// defaults: start from DefaultOptions.
type Options struct {
	// Network (spec/locon.md).
	// NetworkModule is "lycoris.kohya" or "networks.lora" (kohya's own
	// LoRA; ApplyNetworkModule sets its preset from network_args).
	NetworkModule string
	Algo          string // "locon" (or "lora", the same module) or "loha"
	Tucker        bool   // use_tucker: k×k convs decomposed as down 1×1, mid k×k, up 1×1
	// Preset is the UNet layer selection (lycoris.SelectUNet): "full" (282
	// UNet layers, LyCORIS' default), "2023" (278: LyCORIS < 1.9, and
	// networks.lora with conv_dim = the GUI's "Kohya LoCon") or "lora"
	// (192: networks.lora without conv_dim = the GUI's "Standard").
	Preset       string
	NetworkDim   int     // rank of Linear and 1×1 conv modules
	NetworkAlpha float64 // 0 means alpha = rank
	ConvDim      int     // rank of k×k conv modules; 0 means NetworkDim
	ConvAlpha    float64
	// NetworkArgs are the network_args as given ("key=value"), stored in
	// ss_network_args in this order; for lycoris.kohya conv_dim,
	// conv_alpha, algo and preset are added from the fields above when
	// missing, for networks.lora nothing is (no args: no ss_network_args).
	NetworkArgs []string
	// Training-only dropouts (spec/locon.md §5.4, lycoris.Dropout):
	// network_dropout (network_args "dropout"), rank_dropout, module_dropout.
	NetworkDropout, RankDropout, ModuleDropout float64
	// NetworkWeights starts the network from an existing file (kohya's
	// --network_weights): modules present in both take the file's factors
	// and alpha, the others keep their initialisation.
	NetworkWeights string
	// DimFromWeights (kohya's --dim_from_weights) builds the network as
	// the NetworkWeights file is: its ranks, alphas, algorithm and Tucker
	// layout replace the configured ones (DimsFromWeights does it, before
	// New); the configured values still go into ss_network_dim,
	// ss_network_alpha and ss_network_args, as sd-scripts records its
	// arguments.
	DimFromWeights bool
	// ModuleRanks, when not nil, limits the network to the modules named
	// here, each with its rank (lycoris.Config.Modules): DimsFromWeights
	// sets it for a file whose ranks differ between modules of one kind or
	// that covers only part of the preset's layers.
	ModuleRanks map[string]int
	// configured is a copy of the options as configured, kept by
	// DimsFromWeights for the metadata.
	configured *Options

	// Caption handling per sample (spec/dataset.md §7).
	Captions CaptionOptions

	// Data and steps.
	BatchSize     int
	Epochs        int // max_train_epochs
	MaxTrainSteps int // > 0: the number of updates (instead of Epochs × U)
	GradAccum     int // gradient_accumulation_steps

	// Learning rates: a negative UNetLR/TextEncoderLR falls back to
	// LearningRate; 0 drops that part (no modules are created for it).
	LearningRate  float64
	UNetLR        float64
	TextEncoderLR float64

	LRScheduler string
	LRWarmup    float64 // lr_warmup_steps: steps, or a fraction < 1 of the total
	NumCycles   float64 // cosine_with_restarts (default 1)
	Power       float64 // polynomial (default 1)

	Optimizer                 string // AdamW
	Beta1, Beta2, Eps, WDecay float64
	MaxGradNorm               float64 // 0 = no clipping

	MixedPrecision string // no, fp16, bf16 (the CPU computes in fp32 whatever this says)
	SavePrecision  string // fp16, bf16, float

	Seed                  uint64
	ClipSkip              int
	MaxTokenLength        int // 75, 150, 225
	PriorLossWeight       float64
	MinSNRGamma           float64
	Noise                 NoiseOffset
	MultiresIterations    int
	MultiresDiscount      float64
	MinTimestep           int
	MaxTimestep           int
	FlipAug               bool
	GradientCheckpointing bool

	// Output.
	OutputDir        string
	OutputName       string
	SaveEveryNEpochs int
	SaveEveryNSteps  int
	SaveState        bool // also write a resumable state with every saved network
	SaveLastNEpochs  int  // keep only the last N epoch files (kohya's rule, spec/train.md §13)
	SaveLastNSteps   int  // keep only the step files of the last N steps
	TrainingComment  string

	// Informational, for the metadata (what loco-bucket and loco-encode did).
	Resolution    [2]int
	EnableBucket  bool
	NoUpscale     bool
	MinBucketReso int
	MaxBucketReso int
	CacheLatents  bool
	Metadata      map[string]string // modelspec.author etc. and extra keys
}

// DefaultOptions are sd-scripts' defaults where the recipe does not say
// otherwise, with the kohya_ss GUI's where loco follows the GUI (LR 1e-4,
// cosine, fp16 save).
func DefaultOptions() Options {
	return Options{
		NetworkModule: "lycoris.kohya", Algo: "locon", Preset: "full",
		NetworkDim: 8, NetworkAlpha: 1,
		Captions:  CaptionOptions{TokenWarmupMin: 1},
		BatchSize: 1, Epochs: 1, GradAccum: 1,
		LearningRate: 1e-4, UNetLR: -1, TextEncoderLR: -1,
		LRScheduler: "cosine", NumCycles: 1, Power: 1,
		Optimizer: "AdamW", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WDecay: 0.01,
		MaxGradNorm:    1,
		MixedPrecision: "fp16", SavePrecision: "fp16",
		ClipSkip: 1, MaxTokenLength: 75, PriorLossWeight: 1,
		MultiresDiscount: 0.3, MaxTimestep: 1000,
		OutputName: "last", SaveEveryNEpochs: 0,
		Resolution: [2]int{512, 512}, EnableBucket: true, MinBucketReso: 256, MaxBucketReso: 1024,
		CacheLatents: true,
	}
}

// LRs returns the UNet and text-encoder learning rates after the fallback
// to LearningRate.
func (o *Options) LRs() (unet, te float64) {
	unet, te = o.UNetLR, o.TextEncoderLR
	if unet < 0 {
		unet = o.LearningRate
	}
	if te < 0 {
		te = o.LearningRate
	}
	return unet, te
}

// Network modules loco builds.
const (
	ModuleLyCORIS   = "lycoris.kohya"
	ModuleKohyaLoRA = "networks.lora"
)

// argKeys returns the keys of the network_args as given.
func (o *Options) argKeys() map[string]string {
	m := map[string]string{}
	for _, a := range o.NetworkArgs {
		k, v, _ := strings.Cut(a, "=")
		if k = strings.TrimSpace(k); m[k] == "" {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// ApplyNetworkModule makes the network settings follow the network module,
// as sd-scripts builds it (spec/locon.md §3.1), after the network_args are
// set; it returns notes on the settings the module ignores.
//
// networks.lora (kohya's LoRA) reads only conv_dim and conv_alpha of these
// settings: with conv_dim among the network_args it is Kohya LoCon — the
// UNet's transformers plus its ResBlocks and samplers (preset "2023", the
// 278 layers of LyCORIS < 1.9), k×k convs at conv_dim and conv_alpha
// (1 when not given) —, without it plain LoRA: only the Linears and 1×1
// convs of the transformers (preset "lora"; conv_dim and conv_alpha
// unused). algo, preset and use_tucker are LyCORIS' (algo locon, no
// Tucker). For lycoris.kohya a preset "lora" left from a networks.lora
// setting becomes LyCORIS' default, full.
func (o *Options) ApplyNetworkModule() []string {
	args := o.argKeys()
	if o.NetworkModule != ModuleKohyaLoRA {
		if _, ok := args["preset"]; !ok && o.Preset == "lora" {
			o.Preset = "full"
		}
		if _, te := o.LRs(); te != 0 && !lycoris.Preset(o.Preset).WrapsTE() {
			o.TextEncoderLR = 0
			return []string{fmt.Sprintf("preset %s wraps no text-encoder layer: the text encoder is not trained", o.Preset)}
		}
		return nil
	}
	var notes []string
	var ignored []string
	for _, a := range o.NetworkArgs {
		k, v, _ := strings.Cut(a, "=")
		if k = strings.TrimSpace(k); k == "algo" || k == "preset" || k == "use_tucker" {
			ignored = append(ignored, k+"="+strings.TrimSpace(v))
		}
	}
	if len(ignored) > 0 {
		notes = append(notes, fmt.Sprintf("networks.lora ignores network_args %s (LyCORIS options)", strings.Join(ignored, ", ")))
	}
	if o.Algo == "loha" {
		notes = append(notes, "networks.lora has no LoHa: the network is LoRA/LoCon")
	}
	o.Algo, o.Tucker = "locon", false
	if _, ok := args["conv_dim"]; ok {
		o.Preset = "2023"
		if _, ok := args["conv_alpha"]; !ok {
			o.ConvAlpha = 1 // networks.lora's default
		}
	} else {
		o.Preset = "lora"
		o.ConvDim, o.ConvAlpha = 0, 0
	}
	return notes
}

// knownPreset reports whether p names a lycoris preset.
func knownPreset(p string) bool {
	for _, q := range lycoris.Presets {
		if string(q) == p {
			return true
		}
	}
	return false
}

// Validate rejects contradictory or unsupported settings, naming them.
func (o *Options) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if o.NetworkDim < 1 {
		bad("network_dim %d must be at least 1", o.NetworkDim)
	}
	switch o.Algo {
	case "locon", "lora":
	case "loha":
		if o.Tucker {
			bad("use_tucker with algo loha is not supported")
		}
	default:
		bad("algo %q is not supported (locon, lora, loha)", o.Algo)
	}
	switch {
	case !knownPreset(o.Preset):
		var names []string
		for _, p := range lycoris.Presets {
			names = append(names, string(p))
		}
		bad("preset %q is not supported (%s)", o.Preset, strings.Join(names, ", "))
	case o.NetworkModule == ModuleKohyaLoRA && o.Preset != "lora" && o.Preset != "2023":
		bad("networks.lora builds preset lora (no conv_dim in network_args) or 2023 (with conv_dim), not %s", o.Preset)
	case o.NetworkModule != ModuleKohyaLoRA && o.Preset == "lora" && !o.DimFromWeights:
		bad("preset lora is kohya's plain LoRA: --network-module networks.lora without conv_dim in network_args")
	}
	if o.NetworkModule == ModuleKohyaLoRA && (o.Algo == "loha" || o.Tucker) {
		bad("networks.lora has no LoHa and no Tucker (algo %s, use_tucker %t)", o.Algo, o.Tucker)
	}
	if o.BatchSize < 1 || o.GradAccum < 1 {
		bad("train_batch_size %d and gradient_accumulation_steps %d must be at least 1", o.BatchSize, o.GradAccum)
	}
	if o.Epochs < 1 && o.MaxTrainSteps < 1 {
		bad("set max_train_epochs or max_train_steps")
	}
	u, te := o.LRs()
	if u < 0 || te < 0 || u == 0 && te == 0 {
		bad("learning rates: unet_lr %g and text_encoder_lr %g: at least one must be positive", u, te)
	}
	if o.Optimizer != "AdamW" {
		bad("optimizer %q is not supported (AdamW)", o.Optimizer)
	}
	if err := (LRSchedule{Name: o.LRScheduler, Total: 1, Warmup: int(o.LRWarmup)}).Validate(); err != nil && !strings.Contains(err.Error(), "total steps") {
		bad("%v", err)
	}
	switch o.MixedPrecision {
	case "no", "fp16", "bf16":
	default:
		bad("mixed_precision %q (no, fp16, bf16)", o.MixedPrecision)
	}
	switch o.SavePrecision {
	case "fp16", "bf16", "float", "fp32":
	default:
		bad("save_precision %q (fp16, bf16, float)", o.SavePrecision)
	}
	if o.ClipSkip < 1 {
		bad("clip_skip %d must be at least 1", o.ClipSkip)
	}
	switch o.MaxTokenLength {
	case 0, 75, 150, 225:
	default:
		bad("max_token_length %d (75, 150, 225)", o.MaxTokenLength)
	}
	if o.MinTimestep < 0 || o.MaxTimestep > 1000 {
		bad("timestep range [%d, %d) outside [0, 1000]", o.MinTimestep, o.MaxTimestep)
	}
	if o.MultiresIterations < 0 || o.MultiresDiscount < 0 {
		bad("multires noise: iterations %d, discount %g", o.MultiresIterations, o.MultiresDiscount)
	}
	if o.Noise.Offset < 0 {
		bad("noise_offset %g is negative", o.Noise.Offset)
	}
	for _, d := range []struct {
		name string
		p    float64
	}{{"network_dropout", o.NetworkDropout}, {"rank_dropout", o.RankDropout}, {"module_dropout", o.ModuleDropout}} {
		if !(d.p >= 0 && d.p < 1) {
			bad("%s %g must be in [0, 1)", d.name, d.p)
		}
	}
	if o.Algo == "loha" && (o.NetworkDropout > 0 || o.RankDropout > 0) {
		bad("network_dropout and rank_dropout are not defined for algo loha (module_dropout is)")
	}
	errs = append(errs, o.Captions.Validate()...)
	if o.SaveLastNEpochs < 0 || o.SaveLastNSteps < 0 {
		bad("save_last_n_epochs %d and save_last_n_steps %d must not be negative", o.SaveLastNEpochs, o.SaveLastNSteps)
	}
	if o.SaveLastNSteps > 0 && o.SaveEveryNSteps == 0 {
		bad("save_last_n_steps %d needs save_every_n_steps", o.SaveLastNSteps)
	}
	if o.SaveLastNEpochs > 0 && o.SaveEveryNEpochs == 0 {
		bad("save_last_n_epochs %d needs save_every_n_epochs", o.SaveLastNEpochs)
	}
	if o.DimFromWeights && o.NetworkWeights == "" {
		bad("dim_from_weights needs network_weights (the file to take the ranks from)")
	}
	if o.OutputName == "" {
		bad("output_name is empty")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
