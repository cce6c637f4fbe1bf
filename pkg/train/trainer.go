package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"loco/pkg/latentcache"
	"loco/pkg/lycoris"
	"loco/pkg/nn"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
	"loco/pkg/tokenizer"
)

// LatentSource gives the cached VAE posterior of a record (latentcache.Cache
// implements it).
type LatentSource interface {
	Get(key string) (*latentcache.Entry, error)
}

// Models are the frozen base models on one engine.
type Models struct {
	E    *tensor.Engine
	UNet *unet.UNet
	TE   *clip.Model
	Tok  *tokenizer.Tokenizer
}

// ErrInterrupted is returned by Run when its context was cancelled: the
// state of the last completed update has been saved.
var ErrInterrupted = errors.New("training interrupted")

// group is one optimizer parameter group: ranges of the flat buffer.
type group struct {
	Name   string // "unet" or "textencoder"
	LR     float64
	Ranges [][2]int // [offset, length)
}

// Update describes one optimizer update, for metrics.
type Update struct {
	Step      int       // global_step after the update (1-based)
	Epoch     int       // 1-based
	Loss      float64   // mean micro-batch loss of the window
	AvgLoss   float64   // kohya's avr_loss
	LR        []float64 // per group, as used by this update
	Groups    []string
	GradNorm  float64
	Samples   int
	ImagesSec float64
}

// Trainer runs the loop of spec/train.md over a Plan.
type Trainer struct {
	Opt   Options
	Plan  *Plan
	M     Models
	Net   *lycoris.Network
	Lat   LatentSource
	Sched *Schedule
	LR    LRSchedule

	groups []group
	m, v   tensor.Storage

	// Position: the next micro-batch is Batch of epoch Epoch (0-based);
	// Step updates are done.
	Step, Epoch, Batch int
	rec                lossRecorder

	// LossScale multiplies the loss before the backward pass when the
	// engine computes in F16 (dynamic loss scaling, torch GradScaler's
	// rules: an update whose gradients overflow is skipped and the scale
	// halved; after ScaleGrowthInterval good updates it doubles). It is 1
	// and fixed otherwise.
	LossScale float64
	goodSteps int
	// Skipped counts updates skipped for overflowing gradients.
	Skipped int

	// Weights reports what --network-weights loaded (nil without it).
	Weights *WeightsReport

	ctxCache    map[string][]float32 // text-encoder output per caption, when it is frozen
	rawCaptions map[string]bool      // the captions as written in the records (CaptionOptions.Plain)
	latCache    map[string]*latentcache.Entry
	Meta        RunInfo // identity of the run, for the metadata

	// Clock gives the time stamps written into files (time.Now by default;
	// tests fix it for byte-identical outputs).
	Clock func() time.Time
	// OnUpdate is called after every optimizer update (metrics, progress).
	OnUpdate func(Update) error
	// OnSave is called after a network or state file is written.
	OnSave func(path string)
	// Log receives notes (what was saved, mixed precision on the CPU ...).
	Log func(format string, args ...any)
}

// New wraps the selected layers in a LoCon network (seeded from opt.Seed)
// and prepares the optimizer. The UNet modules form the "unet" group and the
// text-encoder modules the "textencoder" group; a part whose learning rate
// is 0 gets no modules.
func New(opt Options, plan *Plan, m Models, lat LatentSource) (*Trainer, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	e := m.E
	if !lycoris.Preset(opt.Preset).WrapsTE() {
		opt.TextEncoderLR = 0 // the unet-* presets (ApplyNetworkModule says so)
	}
	uLR, teLR := opt.LRs()
	var lins []*nn.Linear
	var convs []*nn.Conv2d
	if uLR > 0 {
		l, c := m.UNet.Layers()
		var err error
		if lins, convs, err = lycoris.SelectUNet(lycoris.Preset(opt.Preset), l, c); err != nil {
			return nil, err
		}
	}
	if teLR > 0 {
		var te []*nn.Linear
		for _, nl := range m.TE.Linears() {
			te = append(te, nl.L)
		}
		lins = append(lins, lycoris.SelectTE(lycoris.Preset(opt.Preset), te)...)
	}
	cfg := lycoris.Config{Algo: lycoris.Algo(opt.Algo), Dim: opt.NetworkDim, Alpha: float32(opt.NetworkAlpha), ConvDim: opt.ConvDim,
		ConvAlpha: float32(opt.ConvAlpha), Tucker: opt.Tucker, Multiplier: 1, Modules: opt.ModuleRanks}
	net, err := lycoris.New(e, cfg, lins, convs, Stream(opt.Seed, "init", 0, 0))
	if err != nil {
		return nil, err
	}
	t := &Trainer{Opt: opt, Plan: plan, M: m, Net: net, Lat: lat, Sched: SD1(),
		ctxCache: map[string][]float32{}, latCache: map[string]*latentcache.Entry{}, Clock: time.Now,
		rawCaptions: map[string]bool{}}
	for _, it := range plan.Items {
		for _, c := range opt.Captions.Plain(it.Rec.Caption) {
			t.rawCaptions[c] = true
		}
	}
	if err := net.SetDropout(t.dropout()); err != nil {
		return nil, err
	}
	if opt.NetworkWeights != "" {
		if t.Weights, err = LoadNetworkWeights(net, opt.NetworkWeights); err != nil {
			return nil, err
		}
	}
	total := plan.TotalSteps
	t.LR = LRSchedule{Name: opt.LRScheduler, Warmup: Warmup(opt.LRWarmup, total), Total: total,
		NumCycles: opt.NumCycles, Power: opt.Power, LRInit: opt.LearningRate, LREnd: 1e-7}
	if opt.LRScheduler == "cosine" {
		t.LR.NumCycles = 0 // kohya does not pass num_cycles to cosine: 0.5 (half a wave)
	}
	if err := t.LR.Validate(); err != nil {
		return nil, err
	}
	for _, en := range net.Entries {
		name, lr := "unet", uLR
		if strings.HasPrefix(en.Key, "lora_te_") {
			name, lr = "textencoder", teLR
		}
		gi := -1
		for i := range t.groups {
			if t.groups[i].Name == name {
				gi = i
			}
		}
		if gi < 0 {
			t.groups = append(t.groups, group{Name: name, LR: lr})
			gi = len(t.groups) - 1
		}
		g := &t.groups[gi]
		n := en.Shape.Numel()
		if k := len(g.Ranges); k > 0 && g.Ranges[k-1][0]+g.Ranges[k-1][1] == en.Offset {
			g.Ranges[k-1][1] += n
		} else {
			g.Ranges = append(g.Ranges, [2]int{en.Offset, n})
		}
	}
	t.m = e.B.Alloc(tensor.F32, net.Len())
	t.v = e.B.Alloc(tensor.F32, net.Len())
	e.B.Fill(t.m, 0)
	e.B.Fill(t.v, 0)
	m.UNet.Checkpoint = opt.GradientCheckpointing
	t.rec = newLossRecorder(plan.M)
	t.Meta = newRunInfo(opt.Seed)
	return t, nil
}

// dropout is the network's training-only dropouts from the options.
func (t *Trainer) dropout() lycoris.Dropout {
	return lycoris.Dropout{Dropout: t.Opt.NetworkDropout, Rank: t.Opt.RankDropout, Module: t.Opt.ModuleDropout}
}

// TrainsTE reports whether the text encoder has LoCon modules.
func (t *Trainer) TrainsTE() bool {
	for _, g := range t.groups {
		if g.Name == "textencoder" {
			return true
		}
	}
	return false
}

func (t *Trainer) logf(format string, args ...any) {
	if t.Log != nil {
		t.Log(format, args...)
	}
}

// StepError reports a failed micro-batch or update, naming where it happened.
type StepError struct {
	Step, Epoch, Batch int // Step: the update being computed (1-based)
	Err                error
	State              string // the state file holding the last good network, if written
}

func (e *StepError) Error() string {
	s := fmt.Sprintf("step %d (epoch %d, micro-batch %d): %v", e.Step, e.Epoch+1, e.Batch+1, e.Err)
	if e.State != "" {
		s += "; the last good state (after step " + fmt.Sprint(e.Step-1) + ") is in " + e.State
	}
	return s
}

func (e *StepError) Unwrap() error { return e.Err }

// Run trains until the planned number of updates, saving as configured.
// Cancelling ctx stops at the next update boundary, writes the state and
// returns ErrInterrupted.
func (t *Trainer) Run(ctx context.Context) error {
	p := t.Plan
	if t.Meta.StartedAt.IsZero() {
		t.Meta.StartedAt = t.Clock()
	}
	if t.M.E.B.Name() == "cpu" && t.Opt.MixedPrecision != "no" {
		t.logf("mixed precision %s: the CPU backend computes in float32", t.Opt.MixedPrecision)
	}
	for t.Step < p.TotalSteps {
		batches := p.EpochBatches(t.Opt.Seed, t.Epoch)
		for t.Batch < len(batches) && t.Step < p.TotalSteps {
			if err := ctx.Err(); err != nil {
				path, serr := t.SaveState()
				if serr != nil {
					return fmt.Errorf("%w; saving the state: %v", ErrInterrupted, serr)
				}
				t.logf("interrupted: state after step %d saved to %s", t.Step, path)
				return ErrInterrupted
			}
			start := time.Now()
			lo := t.Batch
			hi := lo
			for !IsUpdate(hi, len(batches), p.GradAccum) {
				hi++
			}
			var sum float64
			samples := 0
			for i := lo; i <= hi; i++ {
				loss, err := t.microBatch(t.Epoch, i, batches[i])
				if err == nil && (math.IsNaN(loss) || math.IsInf(loss, 0)) {
					err = fmt.Errorf("loss is %v", loss)
				}
				if err != nil {
					return t.fail(i, err)
				}
				t.rec.add(t.Epoch, i, loss)
				sum += loss
				samples += len(batches[i].Items)
			}
			lrs, norm, err := t.update()
			if err != nil {
				return t.fail(hi, err)
			}
			t.Step++
			t.Batch = hi + 1
			if t.OnUpdate != nil {
				el := time.Since(start).Seconds()
				u := Update{Step: t.Step, Epoch: t.Epoch + 1, Loss: sum / float64(hi-lo+1), AvgLoss: t.rec.avg(),
					LR: lrs, GradNorm: norm, Samples: samples, ImagesSec: float64(samples) / math.Max(el, 1e-9)}
				for _, g := range t.groups {
					u.Groups = append(u.Groups, g.Name)
				}
				if err := t.OnUpdate(u); err != nil {
					return err
				}
			}
			if n := t.Opt.SaveEveryNSteps; n > 0 && t.Step%n == 0 && t.Step < p.TotalSteps {
				if err := t.save(fmt.Sprintf("%s-step%08d", t.Opt.OutputName, t.Step)); err != nil {
					return err
				}
				if old := removeStepNo(t.Step, n, t.Opt.SaveLastNSteps); old > 0 {
					t.remove(fmt.Sprintf("%s-step%08d", t.Opt.OutputName, old))
				}
			}
		}
		if t.Batch >= len(batches) {
			t.Epoch++
			t.Batch = 0
			if n := t.Opt.SaveEveryNEpochs; n > 0 && t.Epoch%n == 0 && t.Epoch < p.LoopEpochs {
				if err := t.save(fmt.Sprintf("%s-%06d", t.Opt.OutputName, t.Epoch)); err != nil {
					return err
				}
				if old := removeEpochNo(t.Epoch, n, t.Opt.SaveLastNEpochs); old > 0 {
					t.remove(fmt.Sprintf("%s-%06d", t.Opt.OutputName, old))
				}
			}
		}
	}
	return t.save(t.Opt.OutputName)
}

// fail writes the state of the last good update (the parameters are not
// touched by a failed window) and wraps err with the position.
func (t *Trainer) fail(batch int, err error) error {
	se := &StepError{Step: t.Step + 1, Epoch: t.Epoch, Batch: batch, Err: err}
	t.M.E.EndStep()
	t.Net.ZeroGrad()
	if path, serr := t.SaveState(); serr == nil {
		se.State = path
	}
	return se
}

// save writes the network <name>.safetensors (and the state if SaveState).
func (t *Trainer) save(name string) error {
	path := filepath.Join(t.Opt.OutputDir, name+".safetensors")
	dt, err := saveDType(t.Opt.SavePrecision)
	if err != nil {
		return err
	}
	epoch := t.Epoch
	if t.Batch > 0 {
		epoch++ // stopped inside an epoch: kohya reports the epoch being trained
	}
	md := t.Metadata(epoch)
	if err := t.Net.Save(path, dt, md); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	t.logf("saved %s (step %d, epoch %d)", path, t.Step, epoch)
	if t.OnSave != nil {
		t.OnSave(path)
	}
	if t.Opt.SaveState {
		if _, err := t.SaveState(); err != nil {
			return err
		}
	}
	return nil
}

// removeEpochNo is the epoch whose file kohya deletes when it saves epoch e
// with save_every_n_epochs every and save_last_n_epochs keep: e − every·keep
// (0 when nothing is deleted).
func removeEpochNo(e, every, keep int) int {
	if keep <= 0 {
		return 0
	}
	return max(0, e-every*keep)
}

// removeStepNo is kohya's get_remove_step_no: the step file deleted when
// step s is saved with save_every_n_steps every and save_last_n_steps keep,
// s − keep − 1 rounded down to a multiple of every (0 when nothing is
// deleted).
func removeStepNo(s, every, keep int) int {
	if keep <= 0 {
		return 0
	}
	r := s - keep - 1
	if r <= 0 {
		return 0
	}
	return r - r%every
}

// remove deletes an older saved network <name>.safetensors (missing files
// are fine: a resumed run may not have written it).
func (t *Trainer) remove(name string) {
	path := filepath.Join(t.Opt.OutputDir, name+".safetensors")
	if err := os.Remove(path); err == nil {
		t.logf("removed %s (save_last_n)", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		t.logf("removing %s: %v", path, err)
	}
}
