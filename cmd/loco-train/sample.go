package main

import (
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"loco/internal/cli"
	"loco/pkg/sample"
	"loco/pkg/train"
)

// sampleFlags are the sample-image flags (spec/sample.md §1).
func sampleFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "sample-prompts", Usage: "prompt file (.txt with kohya's inline options --n --w --h --s --l --d --ss, or .json) for sample images"},
		&ucli.IntFlag{Name: "sample-every-n-epochs", Usage: "sample at the end of every N epochs (wins over --sample-every-n-steps)"},
		&ucli.IntFlag{Name: "sample-every-n-steps", Usage: "sample after every N updates"},
		&ucli.BoolFlag{Name: "sample-at-first", Usage: "also sample before the first update"},
		&ucli.StringFlag{Name: "sample-sampler", Value: "euler_a", Usage: "euler_a (kohya_ss GUI default), ddim (kohya's DDIM), ddim_sd15 (SD 1.5's DDIM config)"},
	}
}

// sampling is what a run does about sample images.
type sampling struct {
	every   train.SampleEvery
	first   bool
	prompts []sample.Prompt
	sampler sample.Config
	dir     string
	pl      *sample.Pipeline
	last    int // update of the last round (-1: none yet)
	rep     *cli.Reporter
}

// sampleSettings reads the sample settings: the --config's fields (g,
// nil without --config) first, then the flags given. It returns nil when
// the run makes no samples. Prompts are parsed here, before any weights
// are loaded.
func sampleSettings(c *ucli.Context, g *train.GUIConfig, outputDir string, rep *cli.Reporter) (*sampling, error) {
	s := &sampling{last: -1, rep: rep, dir: filepath.Join(outputDir, "sample")}
	sampler := "euler_a"
	var promptFile, promptText, promptSrc string
	if g != nil {
		gs := g.Sample
		if strings.TrimSpace(gs.PromptText) != "" {
			promptText, promptSrc = gs.PromptText, c.String("config")+": sample_prompts"
		}
		if gs.PromptFile != "" {
			promptFile, promptText = gs.PromptFile, ""
		}
		if gs.Sampler != "" {
			sampler = gs.Sampler
		}
		if gs.EveryNEpochs != nil {
			s.every.Epochs = *gs.EveryNEpochs
		}
		if gs.EveryNSteps != nil {
			s.every.Steps = *gs.EveryNSteps
		}
	}
	if c.IsSet("sample-prompts") {
		promptFile, promptText = c.String("sample-prompts"), ""
	}
	if c.IsSet("sample-sampler") {
		sampler = c.String("sample-sampler")
	}
	if c.IsSet("sample-every-n-epochs") {
		s.every.Epochs = c.Int("sample-every-n-epochs")
	}
	if c.IsSet("sample-every-n-steps") {
		s.every.Steps = c.Int("sample-every-n-steps")
	}
	s.first = c.Bool("sample-at-first")
	if s.every.Epochs < 0 || s.every.Steps < 0 {
		return nil, cli.Usagef("--sample-every-n-epochs and --sample-every-n-steps must not be negative")
	}
	var err error
	if s.sampler, err = sample.ByName(sampler); err != nil {
		return nil, cli.Usagef("--sample-sampler: %v", err)
	}
	switch {
	case promptFile != "":
		if s.prompts, err = sample.LoadPrompts(promptFile); err != nil {
			return nil, err
		}
	case promptText != "":
		if s.prompts, err = sample.ParseText(strings.NewReader(promptText), promptSrc); err != nil {
			return nil, err
		}
	}
	if !s.every.Enabled() && !s.first {
		if len(s.prompts) > 0 && c.IsSet("sample-prompts") {
			rep.Warnf("--sample-prompts given without --sample-every-n-epochs, --sample-every-n-steps or --sample-at-first: no samples")
		}
		return nil, nil
	}
	if len(s.prompts) == 0 {
		if promptFile == "" && promptText == "" {
			return nil, cli.Usagef("sampling is scheduled but no prompts were given (--sample-prompts FILE)")
		}
		rep.Warnf("the sample prompts hold no prompt: no samples")
		return nil, nil
	}
	return s, nil
}

// start loads the VAE and builds the pipeline on the trainer's models.
func (s *sampling) start(model string, tr *train.Trainer, modelName string) error {
	m := tr.M
	v, err := train.LoadVAE(model, m.E, m.E.Act)
	if err != nil {
		return err
	}
	s.pl = &sample.Pipeline{E: m.E, UNet: m.UNet, CLIP: m.TE, VAE: v, Tok: m.Tok, ClipSkip: tr.Opt.ClipSkip,
		Sampler: s.sampler, ModelName: strings.TrimSuffix(modelName, filepath.Ext(modelName))}
	return nil
}

// round makes the images of one round, with the network at multiplier 1,
// and a contact sheet. Failures are warnings: training goes on.
func (s *sampling) round(tr *train.Trainer, epoch int) {
	r := train.SampleRound{Epoch: epoch, Step: tr.Step, At: tr.Clock()}
	name := tr.Opt.OutputName
	saved := tr.Net.Multiplier
	tr.Net.Multiplier = 1
	defer func() { tr.Net.Multiplier = saved }()
	// Sampling's buffers (the VAE decoder's full-resolution activations)
	// have other sizes than training's: a backend that caches freed blocks
	// by size lets them go afterwards instead of keeping them for good.
	if t, ok := tr.M.E.B.(interface{ Trim() }); ok {
		defer t.Trim()
	}
	paths, err := s.pl.Round(s.prompts, s.dir,
		func(i int) int64 { return train.SampleSeed(tr.Opt.Seed, tr.Step, i) },
		func(i int, p sample.Prompt, seed int64) string { return r.FileName(name, i, seed, p.HasSeed) },
		filepath.Join(s.dir, r.SheetName(name)), nil)
	s.last = tr.Step
	if err != nil {
		s.rep.Warnf("sample images at step %d: %v", tr.Step, err)
		return
	}
	s.rep.Notef("sample images at step %d: %d in %s, with a contact sheet", tr.Step, len(paths)-1, s.dir)
}

// afterUpdate samples when the schedule says so; call it from OnUpdate.
func (s *sampling) afterUpdate(tr *train.Trainer, u train.Update) {
	end := tr.EpochEnded()
	if s.every.Due(u.Step, u.Epoch, end) {
		if s.every.Epochs > 0 {
			s.round(tr, u.Epoch)
		} else {
			s.round(tr, 0)
		}
	}
}
