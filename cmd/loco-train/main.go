// Command loco-train trains a LoCon network for SD 1.x on the records and
// latent cache written by loco-encode, like kohya sd-scripts'
// train_network.py with LyCORIS (see ../../pkg/train).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"loco/internal/cli"
	"loco/internal/device"
	"loco/pkg/latentcache"
	"loco/pkg/manifest"
	"loco/pkg/tokenizer"
	"loco/pkg/train"
)

const keyField = "latent_key"

const usage = `loco-train trains a LoCon (LyCORIS "locon") network for an SD 1.x
checkpoint on the records of loco-encode and its latent cache, with the
maths of kohya sd-scripts' train_network.py (spec/train.md). Flags are
sd-scripts' argument names in kebab case; --config imports a kohya_ss GUI
JSON config (explicit flags win) and --explain shows how each field maps.

The plan (images, repeats, steps per epoch, total steps, LR at a few
points) is printed before any weights are loaded; --dry-run stops there.
Networks are saved as <output-name>[-<epoch:06d>].safetensors in
--output-dir, with kohya's metadata; the metrics go to
<output-name>-metrics.jsonl and a plot to <output-name>-loss.png. Ctrl-C
saves <output-name>-state.safetensors; --resume continues from it.
SOURCE_DATE_EPOCH fixes the time stamps written into the files.

Sample images: --sample-prompts FILE with --sample-every-n-epochs N or
--sample-every-n-steps N makes one PNG per prompt (the settings in an
AUTOMATIC1111 "parameters" text chunk) between updates, with the network
at multiplier 1, into <output-dir>/sample/ as kohya names them
(<output-name>_e<epoch:06d>_<ii>_<time>[_<seed>].png, or <step:06d> for
step samples), plus a contact sheet <output-name>_<when>_sheet.png per
round. A --config's sample_prompts text and schedule are used too.

Examples:
   loco-train --model sd15.safetensors --data train.jsonl --cache cache -o out --output-name pralyco \
     --network-dim 8 --network-alpha 4 --network-args conv_dim=4 --network-args conv_alpha=4 \
     --train-batch-size 3 --max-train-epochs 4 --gradient-accumulation-steps 12 \
     --learning-rate 1e-4 --lr-scheduler cosine --multires-noise-iterations 10 --multires-noise-discount 0.1 \
     --save-precision fp16 --training-comment "trigger: pralyco"
   loco-train --config pralyco.json --data train.jsonl --cache cache --model sd15.safetensors --explain
   loco-train ... --sample-prompts prompts.txt --sample-every-n-epochs 1 --sample-sampler euler_a
   loco-train ... --network-module networks.lora        # kohya's plain LoRA (the GUI's "Standard")
   loco-train ... --network-module networks.lora --network-args conv_dim=4 --network-args conv_alpha=1   # Kohya LoCon
   loco-train ... --dry-run
   loco-train ... --resume out/pralyco-state.safetensors`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// ExitInterrupted is the exit code after Ctrl-C (the state was saved).
const ExitInterrupted = 130

func flags() []ucli.Flag {
	d := train.DefaultOptions()
	return []ucli.Flag{
		&ucli.StringFlag{Name: "data", Usage: "records from loco-encode (JSON Lines; - for stdin)"},
		&ucli.StringFlag{Name: "cache", Usage: "the latent cache folder of loco-encode"},
		&ucli.StringFlag{Name: "model", Aliases: []string{"pretrained-model-name-or-path"}, Usage: "SD 1.x single-file checkpoint (.safetensors)"},
		&ucli.StringFlag{Name: "vocab", Usage: "CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz, or vocab.json+merges.txt folder); default $" + tokenizer.EnvVocab},
		&ucli.StringFlag{Name: "config", Usage: "kohya_ss GUI JSON config to import"},
		&ucli.BoolFlag{Name: "explain", Usage: "print how --config mapped and the plan, then exit"},
		&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan and exit before loading weights"},
		&ucli.StringFlag{Name: "output-dir", Aliases: []string{"o"}, Value: ".", Usage: "output folder"},
		&ucli.StringFlag{Name: "output-name", Value: d.OutputName, Usage: "file base name"},
		&ucli.StringFlag{Name: "logging-dir", Usage: "folder for the metrics log and plot (default: --output-dir)"},
		&ucli.StringFlag{Name: "network-module", Value: d.NetworkModule, Usage: "lycoris.kohya (LyCORIS LoCon/LoHa), or networks.lora (kohya's LoRA: plain LoRA of the UNet's transformers, the GUI's Standard; with --network-args conv_dim=… Kohya LoCon)"},
		&ucli.IntFlag{Name: "network-dim", Value: d.NetworkDim, Usage: "rank of Linear and 1×1 conv modules"},
		&ucli.Float64Flag{Name: "network-alpha", Value: d.NetworkAlpha, Usage: "alpha (scale alpha/rank)"},
		&ucli.StringSliceFlag{Name: "network-args", Usage: "key=value: conv_dim, conv_alpha, algo (locon, loha), preset (full, 2023), use_tucker, dropout, rank_dropout, module_dropout (networks.lora reads conv_dim, conv_alpha and the dropouts); repeat the flag"},
		&ucli.Float64Flag{Name: "network-dropout", Usage: "dropout of the LoCon rank features in training (0 = off)"},
		&ucli.StringFlag{Name: "network-weights", Usage: "start from this network file (modules with the same names and shapes)"},
		&ucli.BoolFlag{Name: "dim-from-weights", Usage: "build the network as --network-weights is: its ranks, alphas, algo and Tucker layout (the configured ones still go into the metadata)"},
		&ucli.BoolFlag{Name: "shuffle-caption", Usage: "shuffle the comma-separated tags of each caption (after --keep-tokens)"},
		&ucli.IntFlag{Name: "keep-tokens", Usage: "leading caption tags kept in place by shuffling and tag dropout"},
		&ucli.Float64Flag{Name: "caption-dropout-rate", Usage: "train on the empty caption with this probability"},
		&ucli.IntFlag{Name: "caption-dropout-every-n-epochs", Usage: "drop every caption in epochs N, 2N, …"},
		&ucli.Float64Flag{Name: "caption-tag-dropout-rate", Usage: "drop each caption tag (after --keep-tokens) with this probability"},
		&ucli.StringFlag{Name: "caption-prefix", Usage: "text put before every caption (with a space)"},
		&ucli.StringFlag{Name: "caption-suffix", Usage: "text put after every caption (with a space)"},
		&ucli.StringFlag{Name: "caption-separator", Value: ",", Usage: "what caption tags are split on (processed tags are joined with \", \")"},
		&ucli.StringFlag{Name: "secondary-separator", Usage: "joins tags that shuffle and drop as one; replaced by --caption-separator at the end"},
		&ucli.StringFlag{Name: "keep-tokens-separator", Usage: "tags before it stay fixed (instead of --keep-tokens), tags after a second one are a fixed suffix; acts only with shuffling, tag dropout or token warm-up"},
		&ucli.BoolFlag{Name: "enable-wildcard", Usage: "a caption of several lines (loco-scan --enable-wildcard) uses one line at random per use, and {a|b|c} one alternative ({{ }} are literal braces); without it only the first line is used"},
		&ucli.IntFlag{Name: "token-warmup-min", Value: d.Captions.TokenWarmupMin, Usage: "token warm-up: flexible tags used at step 0"},
		&ucli.Float64Flag{Name: "token-warmup-step", Usage: "token warm-up: all tags are used from this step on (a fraction < 1 of the total steps, or steps; 0 = off)"},
		&ucli.BoolFlag{Name: "network-train-unet-only", Usage: "no text-encoder modules"},
		&ucli.BoolFlag{Name: "network-train-text-encoder-only", Usage: "no UNet modules"},
		&ucli.IntFlag{Name: "train-batch-size", Value: d.BatchSize, Usage: "batch size"},
		&ucli.IntFlag{Name: "max-train-epochs", Value: d.Epochs, Usage: "epochs"},
		&ucli.IntFlag{Name: "max-train-steps", Usage: "updates (overrides epochs × steps per epoch)"},
		&ucli.IntFlag{Name: "gradient-accumulation-steps", Value: d.GradAccum, Usage: "micro-batches per update"},
		&ucli.Float64Flag{Name: "learning-rate", Value: d.LearningRate, Usage: "default learning rate"},
		&ucli.Float64Flag{Name: "unet-lr", Value: -1, Usage: "UNet learning rate (default: --learning-rate; 0 = don't train the UNet)"},
		&ucli.Float64Flag{Name: "text-encoder-lr", Value: -1, Usage: "text-encoder learning rate (default: --learning-rate; 0 = UNet only)"},
		&ucli.StringFlag{Name: "lr-scheduler", Value: d.LRScheduler, Usage: "constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial"},
		&ucli.Float64Flag{Name: "lr-warmup-steps", Usage: "warmup updates, or a fraction < 1 of the total"},
		&ucli.Float64Flag{Name: "lr-scheduler-num-cycles", Value: d.NumCycles, Usage: "cosine_with_restarts cycles"},
		&ucli.Float64Flag{Name: "lr-scheduler-power", Value: d.Power, Usage: "polynomial power"},
		&ucli.StringFlag{Name: "optimizer-type", Value: d.Optimizer, Usage: "AdamW"},
		&ucli.StringSliceFlag{Name: "optimizer-args", Usage: "weight_decay=…, betas=(…,…), eps=…"},
		&ucli.Float64Flag{Name: "max-grad-norm", Value: d.MaxGradNorm, Usage: "clip the gradient norm (0 = off)"},
		&ucli.StringFlag{Name: "mixed-precision", Value: d.MixedPrecision, Usage: "no, fp16, bf16 (the CPU computes in float32)"},
		&ucli.StringFlag{Name: "device", Value: "auto", Usage: "auto (a CUDA GPU when one is found, else the CPU), cuda or cpu"},
		&ucli.StringFlag{Name: "save-precision", Value: d.SavePrecision, Usage: "fp16, bf16, float"},
		&ucli.Uint64Flag{Name: "seed", Usage: "random seed (0: draw one and print it)"},
		&ucli.IntFlag{Name: "clip-skip", Value: d.ClipSkip, Usage: "text-encoder layer from the end"},
		&ucli.IntFlag{Name: "max-token-length", Value: d.MaxTokenLength, Usage: "75, 150 or 225"},
		&ucli.Float64Flag{Name: "prior-loss-weight", Value: d.PriorLossWeight, Usage: "loss weight of regularization images"},
		&ucli.Float64Flag{Name: "min-snr-gamma", Usage: "min-SNR weighting γ (0 = off)"},
		&ucli.Float64Flag{Name: "noise-offset", Usage: "offset noise strength"},
		&ucli.BoolFlag{Name: "noise-offset-random-strength", Usage: "offset strength U(0,1) × noise-offset"},
		&ucli.Float64Flag{Name: "adaptive-noise-scale", Usage: "adaptive offset scale"},
		&ucli.IntFlag{Name: "multires-noise-iterations", Usage: "pyramid noise levels (0 = off)"},
		&ucli.Float64Flag{Name: "multires-noise-discount", Value: d.MultiresDiscount, Usage: "pyramid noise discount"},
		&ucli.IntFlag{Name: "min-timestep", Value: d.MinTimestep, Usage: "smallest timestep"},
		&ucli.IntFlag{Name: "max-timestep", Value: d.MaxTimestep, Usage: "timesteps below this"},
		&ucli.BoolFlag{Name: "flip-aug", Usage: "use the mirrored latents of loco-encode --flip at random"},
		&ucli.BoolFlag{Name: "gradient-checkpointing", Usage: "recompute UNet blocks in backward (less memory)"},
		&ucli.IntFlag{Name: "save-every-n-epochs", Usage: "save a network every N epochs"},
		&ucli.IntFlag{Name: "save-every-n-steps", Usage: "save a network every N updates"},
		&ucli.IntFlag{Name: "save-last-n-epochs", Usage: "keep only the epoch files of the last N saves (kohya's rule)"},
		&ucli.IntFlag{Name: "save-last-n-steps", Usage: "keep only the step files of the last N steps"},
		&ucli.BoolFlag{Name: "save-state", Usage: "write the resumable state with every saved network"},
		&ucli.StringFlag{Name: "resume", Usage: "continue from a state file"},
		&ucli.StringFlag{Name: "training-comment", Usage: "stored as ss_training_comment"},
		&ucli.StringFlag{Name: "resolution", Value: "512,512", Usage: "training resolution (metadata; loco-bucket chose the buckets)"},
		&ucli.StringFlag{Name: "metadata-title", Usage: "modelspec.title"},
		&ucli.StringFlag{Name: "metadata-author", Usage: "modelspec.author"},
		&ucli.StringFlag{Name: "metadata-description", Usage: "modelspec.description"},
		&ucli.StringFlag{Name: "metadata-license", Usage: "modelspec.license"},
		&ucli.StringFlag{Name: "metadata-tags", Usage: "modelspec.tags"},
		cli.ProgressFlag(""),
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := append(flags(), sampleFlags()...)
	interrupted := false
	app := &ucli.App{
		Name:        "loco-train",
		Usage:       "train a LoCon network on cached latents",
		UsageText:   "loco-train --model MODEL --data train.jsonl --cache CACHE [options]",
		Description: usage,
		Flags:       fl,
		Action: func(c *ucli.Context) error {
			err := action(c, stdin, stdout, stderr)
			if errors.Is(err, train.ErrInterrupted) {
				interrupted = true
				return nil
			}
			return err
		},
	}
	code := cli.Run(app, cli.Permute(args, fl), stdout, stderr)
	if interrupted {
		return ExitInterrupted
	}
	return code
}

// options builds the run's options: defaults, then --config, then the
// flags given explicitly.
func options(c *ucli.Context, rep *cli.Reporter) (train.Options, *train.GUIConfig, error) {
	o := train.DefaultOptions()
	var g *train.GUIConfig
	if p := c.String("config"); p != "" {
		raw, err := os.ReadFile(p)
		if err != nil {
			return o, nil, err
		}
		g, err = train.ImportGUIConfig(raw, o)
		if err != nil {
			return o, g, fmt.Errorf("%s: %w", p, err)
		}
		for _, w := range g.Warnings {
			rep.Warnf("%s: %s", p, w)
		}
		o = g.Options
	}
	set := c.IsSet
	if set("network-module") {
		o.NetworkModule = c.String("network-module")
	}
	if set("network-dim") {
		o.NetworkDim = c.Int("network-dim")
	}
	if set("network-alpha") {
		o.NetworkAlpha = c.Float64("network-alpha")
	}
	if set("network-args") {
		if err := o.SetNetworkArgs(c.StringSlice("network-args")); err != nil {
			return o, g, cli.Usagef("--network-args %v", err)
		}
	}
	intFlags := map[string]*int{"train-batch-size": &o.BatchSize, "max-train-epochs": &o.Epochs, "max-train-steps": &o.MaxTrainSteps,
		"gradient-accumulation-steps": &o.GradAccum, "clip-skip": &o.ClipSkip, "max-token-length": &o.MaxTokenLength,
		"multires-noise-iterations": &o.MultiresIterations, "min-timestep": &o.MinTimestep, "max-timestep": &o.MaxTimestep,
		"save-every-n-epochs": &o.SaveEveryNEpochs, "save-every-n-steps": &o.SaveEveryNSteps,
		"save-last-n-epochs": &o.SaveLastNEpochs, "save-last-n-steps": &o.SaveLastNSteps,
		"keep-tokens": &o.Captions.KeepTokens, "caption-dropout-every-n-epochs": &o.Captions.DropoutEveryNEpochs,
		"token-warmup-min": &o.Captions.TokenWarmupMin}
	for n, p := range intFlags {
		if set(n) {
			*p = c.Int(n)
		}
	}
	floatFlags := map[string]*float64{"learning-rate": &o.LearningRate, "unet-lr": &o.UNetLR, "text-encoder-lr": &o.TextEncoderLR,
		"lr-warmup-steps": &o.LRWarmup, "lr-scheduler-num-cycles": &o.NumCycles, "lr-scheduler-power": &o.Power,
		"max-grad-norm": &o.MaxGradNorm, "prior-loss-weight": &o.PriorLossWeight, "min-snr-gamma": &o.MinSNRGamma,
		"noise-offset": &o.Noise.Offset, "adaptive-noise-scale": &o.Noise.Adaptive, "multires-noise-discount": &o.MultiresDiscount,
		"network-dropout": &o.NetworkDropout, "caption-dropout-rate": &o.Captions.DropoutRate, "caption-tag-dropout-rate": &o.Captions.TagDropoutRate,
		"token-warmup-step": &o.Captions.TokenWarmupStep}
	for n, p := range floatFlags {
		if set(n) {
			*p = c.Float64(n)
		}
	}
	strFlags := map[string]*string{"lr-scheduler": &o.LRScheduler, "optimizer-type": &o.Optimizer, "mixed-precision": &o.MixedPrecision,
		"save-precision": &o.SavePrecision, "output-name": &o.OutputName, "training-comment": &o.TrainingComment,
		"network-weights": &o.NetworkWeights, "caption-prefix": &o.Captions.Prefix, "caption-suffix": &o.Captions.Suffix,
		"caption-separator": &o.Captions.Separator, "secondary-separator": &o.Captions.SecondarySeparator,
		"keep-tokens-separator": &o.Captions.KeepTokensSeparator}
	for n, p := range strFlags {
		if set(n) {
			*p = c.String(n)
		}
	}
	boolFlags := map[string]*bool{"noise-offset-random-strength": &o.Noise.RandomStrength, "flip-aug": &o.FlipAug,
		"gradient-checkpointing": &o.GradientCheckpointing, "save-state": &o.SaveState, "shuffle-caption": &o.Captions.Shuffle,
		"enable-wildcard": &o.Captions.EnableWildcard, "dim-from-weights": &o.DimFromWeights}
	for n, p := range boolFlags {
		if set(n) {
			*p = c.Bool(n)
		}
	}
	if set("caption-separator") && c.String("caption-separator") == "" {
		return o, g, cli.Usagef("--caption-separator \"\": the separator must not be empty")
	}
	if set("optimizer-args") {
		if err := o.SetOptimizerArgs(c.StringSlice("optimizer-args")); err != nil {
			return o, g, cli.Usagef("--optimizer-args: %v", err)
		}
	}
	if c.Bool("network-train-unet-only") && c.Bool("network-train-text-encoder-only") {
		return o, g, cli.Usagef("--network-train-unet-only and --network-train-text-encoder-only contradict each other")
	}
	if c.Bool("network-train-unet-only") {
		o.TextEncoderLR = 0
	}
	if c.Bool("network-train-text-encoder-only") {
		o.UNetLR = 0
	}
	if set("seed") || g == nil || o.Seed == 0 {
		o.Seed = c.Uint64("seed")
	}
	if set("resolution") || g == nil {
		var w, h int
		if _, err := fmt.Sscanf(c.String("resolution"), "%d,%d", &w, &h); err != nil {
			if _, err := fmt.Sscanf(c.String("resolution"), "%d", &w); err != nil {
				return o, g, cli.Usagef("--resolution %q: want W,H or W", c.String("resolution"))
			}
			h = w
		}
		o.Resolution = [2]int{w, h}
	}
	for _, k := range []string{"title", "author", "description", "license", "tags"} {
		if v := c.String("metadata-" + k); v != "" {
			if o.Metadata == nil {
				o.Metadata = map[string]string{}
			}
			o.Metadata["modelspec."+k] = v
		}
	}
	if set("network-module") || set("network-args") {
		for _, n := range o.ApplyNetworkModule() {
			rep.Warnf("%s", n)
		}
	}
	if err := o.Validate(); err != nil {
		return o, g, cli.Usagef("%v", err)
	}
	return o, g, nil
}

func action(c *ucli.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	rep := cli.NewReporter("loco-train", stderr)
	if c.NArg() > 0 {
		return cli.Usagef("unexpected argument %q", c.Args().First())
	}
	mode, err := cli.ParseProgress(c.String("progress"))
	if err != nil {
		return err
	}
	o, g, err := options(c, rep)
	if err != nil {
		return err
	}
	o.OutputDir = c.String("output-dir")
	smp, err := sampleSettings(c, g, o.OutputDir, rep)
	if err != nil {
		return err
	}
	if c.String("data") == "" {
		return cli.Usagef("--data RECORDS (the output of loco-encode) is required")
	}
	if c.String("cache") == "" && !c.Bool("dry-run") && !c.Bool("explain") {
		return cli.Usagef("--cache CACHE (the folder of loco-encode) is required")
	}
	in, closeIn, err := cli.OpenInput(c.String("data"), stdin)
	if err != nil {
		return err
	}
	defer closeIn()
	name := c.String("data")
	if name == "-" {
		name = "stdin"
	}
	recs, err := manifest.ReadAll(in, name, "bucket", keyField)
	if err != nil {
		return err
	}
	plan, err := train.NewPlan(recs, keyField, o.BatchSize, o.GradAccum, o.Epochs, o.MaxTrainSteps)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	uLR, _ := o.LRs()
	lr := train.LRSchedule{Name: o.LRScheduler, Warmup: train.Warmup(o.LRWarmup, plan.TotalSteps), Total: plan.TotalSteps,
		NumCycles: o.NumCycles, Power: o.Power, LRInit: o.LearningRate, LREnd: 1e-7}
	if o.LRScheduler == "cosine" {
		lr.NumCycles = 0
	}
	if err := lr.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	if c.Bool("explain") {
		if g == nil {
			return cli.Usagef("--explain needs --config FILE")
		}
		fmt.Fprintln(stdout, "kohya_ss config fields:")
		for _, l := range g.Explain {
			fmt.Fprintln(stdout, "  "+l)
		}
		fmt.Fprintln(stdout, "plan:")
		fmt.Fprint(stdout, plan.Describe(lr, uLR))
		fmt.Fprint(stdout, plan.DescribeCaptions(o.Captions, o.Seed))
		return nil
	}
	for _, n := range plan.CaptionNotes(o.Captions) {
		rep.Notef("%s: %s", name, n)
	}
	if c.Bool("dry-run") {
		fmt.Fprint(stdout, plan.Describe(lr, uLR))
		fmt.Fprint(stdout, plan.DescribeCaptions(o.Captions, o.Seed))
		return nil
	}
	rep.Printf("%s", plan.Describe(lr, uLR))
	if d := o.Captions.Describe(plan.TotalSteps); d != "" {
		rep.Printf("captions: %s\n", d)
	}
	if plan.GUISteps != plan.TotalSteps && g != nil && g.MaxSteps == 0 {
		rep.Warnf("the kohya_ss GUI would run %d steps for this config (its formula ignores buckets and epoch-end windows); loco runs epochs × steps per epoch = %d", plan.GUISteps, plan.TotalSteps)
	}
	// Everything that can fail cheaply fails before the weights are loaded.
	if err := checkWritable(o.OutputDir); err != nil {
		return err
	}
	logDir := c.String("logging-dir")
	if logDir == "" {
		logDir = o.OutputDir
	} else if err := checkWritable(logDir); err != nil {
		return err
	}
	if c.String("model") == "" {
		return cli.Usagef("--model CHECKPOINT is required")
	}
	tok, err := tokenizer.LoadDefault(c.String("vocab"))
	if err != nil {
		return err
	}
	cache, err := openCache(c.String("cache"))
	if err != nil {
		return err
	}
	defer cache.Close()
	if o.Seed == 0 {
		o.Seed = uint64(rand.Uint32())
		rep.Notef("seed %d (random; pass --seed %d to repeat this run)", o.Seed, o.Seed)
	}
	e, err := device.Engine(c.String("device"), o.MixedPrecision, "training", rep.Notef)
	if err != nil {
		return err
	}
	models, info, vaeHash, err := train.LoadModels(c.String("model"), e, e.Act, tok)
	if err != nil {
		return err
	}
	if err := checkCache(cache, plan, vaeHash, c.String("model")); err != nil {
		return err
	}
	if vaeHash == "" {
		rep.Warnf("%s has no VAE: cannot check that the cache was encoded with this model's VAE", c.String("model"))
	}
	notes, err := train.DimsFromWeights(&o, models)
	if err != nil {
		return err
	}
	for _, n := range notes {
		rep.Notef("%s", n)
	}
	tr, err := train.New(o, plan, models, cache)
	if err != nil {
		return err
	}
	info.SessionID = tr.Meta.SessionID
	tr.Meta = info
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q is not an integer", s)
		}
		tr.Clock = func() time.Time { return time.Unix(sec, 0).UTC() }
	}
	tr.Log = func(f string, a ...any) { rep.Notef(f, a...) }
	if tr.Weights != nil {
		rep.Notef("%s", tr.Weights)
	}
	if smp != nil {
		if err := smp.start(c.String("model"), tr, info.ModelName); err != nil {
			return err
		}
	}
	if p := c.String("resume"); p != "" {
		if err := tr.LoadState(p); err != nil {
			return err
		}
		rep.Notef("resumed from %s at step %d (epoch %d)", p, tr.Step, tr.Epoch+1)
	}
	metricsPath := filepath.Join(logDir, o.OutputName+"-metrics.jsonl")
	var history []train.MetricsLine
	if tr.Step > 0 {
		if h, err := train.ReadMetrics(metricsPath, tr.Step); err == nil {
			history = h
		}
	}
	// The metrics log restarts from the kept history (a resumed run's lines
	// up to its step) in a temporary file renamed over the old log, so a
	// crash here loses no line; the run then appends to it.
	mf, err := os.CreateTemp(logDir, "."+o.OutputName+"-metrics.jsonl.tmp-*")
	if err != nil {
		return err
	}
	defer mf.Close()
	mf.Chmod(0o644) // as os.Create would make it
	enc := json.NewEncoder(mf)
	for _, l := range history {
		if err := enc.Encode(l); err != nil {
			os.Remove(mf.Name())
			return err
		}
	}
	if err := os.Rename(mf.Name(), metricsPath); err != nil {
		os.Remove(mf.Name())
		return err
	}
	prog := newTrainProgress(mode, stderr, tr.Step, plan.TotalSteps, plan.LoopEpochs)
	tr.Log = func(f string, a ...any) {
		prog.clear()
		rep.Notef(f, a...)
	}
	tr.OnUpdate = func(u train.Update) error {
		l := u.Line()
		history = append(history, l)
		prog.update(u)
		if err := enc.Encode(l); err != nil {
			return err
		}
		if smp != nil {
			smp.afterUpdate(tr, u)
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if smp != nil && smp.first && tr.Step == 0 {
		smp.round(tr, 0)
	}
	err = tr.Run(ctx)
	prog.finish()
	if len(history) > 0 {
		if perr := train.WritePlot(filepath.Join(logDir, o.OutputName+"-loss.png"), history, o.OutputName); perr != nil {
			rep.Warnf("plot: %v", perr)
		}
	}
	if errors.Is(err, train.ErrInterrupted) {
		rep.Notef("interrupted after step %d; continue with --resume %s", tr.Step, tr.StatePath())
		return err
	}
	if err != nil {
		return err
	}
	rep.Notef("%d steps in %.1fs; network %s", plan.TotalSteps, time.Since(start).Seconds(), filepath.Join(o.OutputDir, o.OutputName+".safetensors"))
	return nil
}

// checkWritable creates dir if needed and checks that a file can be made in it.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output folder %s: %v", dir, err)
	}
	f, err := os.CreateTemp(dir, ".loco-train-check-*")
	if err != nil {
		return fmt.Errorf("output folder %s is not writable: %v", dir, unwrapPath(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func openCache(dir string) (*latentcache.Cache, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, fmt.Errorf("cache folder %s: no index.json (make it with loco-encode)", dir)
	}
	return latentcache.Open(dir)
}

// checkCache checks that every record's latent is cached, was encoded with
// the model's VAE and has the shape of its bucket for the SD 1.x UNet.
func checkCache(cache *latentcache.Cache, plan *train.Plan, vaeHash, model string) error {
	ix := cache.Index()
	for _, it := range plan.Items {
		if it.Repeats == 0 {
			continue
		}
		ie, ok := ix.Entries[it.Key]
		if !ok {
			return fmt.Errorf("%s: latent %s is not in the cache %s (run loco-encode with this cache)", it.Rec.Path, it.Key, cache.Dir())
		}
		if vaeHash != "" && ie.VAE != vaeHash {
			vf := ix.VAEs[ie.VAE].File
			return cli.WithHints(fmt.Errorf("%s: its latent in %s was encoded with another VAE (%s, %.12s…) than %s's (%.12s…)",
				it.Rec.Path, cache.Dir(), vf, ie.VAE, model, vaeHash), "re-run loco-encode with --vae "+model)
		}
		if ie.Shape[0] != 4 || ie.Shape[1]*8 != it.Bucket[1] || ie.Shape[2]*8 != it.Bucket[0] {
			return fmt.Errorf("%s: cached latent of shape %v for bucket %dx%d: not an SD 1.x latent (4 channels, 1/8 of the bucket)",
				it.Rec.Path, ie.Shape, it.Bucket[0], it.Bucket[1])
		}
	}
	return nil
}
