package train

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"loco/pkg/latentcache/encode"
	"loco/pkg/lycoris"
	"loco/pkg/nn"
	"loco/pkg/sd"
	"loco/pkg/sd/vae"
	"loco/pkg/tensor"
)

// This file holds what loco-train and loco-sample need around sample
// images (spec/sample.md §1): when a run samples, how the files are named,
// the VAE of the base checkpoint, and network files attached to the base
// model's layers. The image generation itself is pkg/sample's (which
// imports this package, so it cannot be called from here).

// SampleEvery says when a run makes sample images.
type SampleEvery struct {
	Epochs int // at the end of every Epochs-th epoch (1-based); when set, Steps is ignored
	Steps  int // after every Steps-th optimizer update
}

// Enabled reports whether the run samples at all.
func (s SampleEvery) Enabled() bool { return s.Epochs > 0 || s.Steps > 0 }

// Due reports whether to sample after update step (1-based) of epoch
// (1-based); epochEnd says that this update ended the epoch (also when
// the run stops inside it because of max_train_steps). kohya: with
// sample_every_n_epochs, at epoch ends where epoch mod N = 0; otherwise
// after updates where step mod N = 0.
func (s SampleEvery) Due(step, epoch int, epochEnd bool) bool {
	if s.Epochs > 0 {
		return epochEnd && epoch%s.Epochs == 0
	}
	return s.Steps > 0 && step%s.Steps == 0
}

// EpochEnded reports, from inside OnUpdate, whether the update just done
// ended an epoch: its last micro-batch, or the last update of the run.
// The epoch is t.Epoch+1 (1-based) until Run moves on.
func (t *Trainer) EpochEnded() bool {
	return t.Batch >= t.Plan.M || t.Step >= t.Plan.TotalSteps
}

// SampleRound names one sampling round: by epoch (Epoch > 0, kohya's
// "e%06d") or by update number (Epoch = 0, "%06d").
type SampleRound struct {
	Epoch, Step int
	At          time.Time // the round's time stamp
}

// When is the round's part of a file name.
func (r SampleRound) When() string {
	if r.Epoch > 0 {
		return fmt.Sprintf("e%06d", r.Epoch)
	}
	return fmt.Sprintf("%06d", r.Step)
}

// FileName is kohya's sample file name (sd-scripts' current order):
// [<outputName>_]<when>_<index:02d>_<YYYYmmddHHMMSS>[_<seed>].png, the
// seed only when the prompt fixes one.
func (r SampleRound) FileName(outputName string, index int, seed int64, hasSeed bool) string {
	var b strings.Builder
	if outputName != "" {
		b.WriteString(outputName + "_")
	}
	fmt.Fprintf(&b, "%s_%02d_%s", r.When(), index, r.At.Format("20060102150405"))
	if hasSeed {
		fmt.Fprintf(&b, "_%d", seed)
	}
	b.WriteString(".png")
	return b.String()
}

// SheetName is the contact sheet of the round: [<outputName>_]<when>_sheet.png.
func (r SampleRound) SheetName(outputName string) string {
	if outputName != "" {
		return outputName + "_" + r.When() + "_sheet.png"
	}
	return r.When() + "_sheet.png"
}

// SampleSeed is the seed of prompt index in a round when the prompt fixes
// none. kohya draws a fresh random seed; loco derives it from the run's
// seed, the update and the prompt index, so that a run repeated with the
// same seed makes the same images. It is written into each PNG.
func SampleSeed(runSeed uint64, step, index int) int64 {
	return int64(Stream(runSeed, "sample", step, index).Uint64() >> 33)
}

// LoadVAE builds the VAE (keys first_stage_model.*) of the single-file
// checkpoint at path on e, its weights in dtype dt.
func LoadVAE(path string, e *tensor.Engine, dt tensor.DType) (*vae.VAE, error) {
	ck, err := sd.OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	cfg, err := encode.ConfigFromFile(ck.F)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	b := nn.NewBuilder(vae.Prefix, ck.Source(e, dt))
	v := vae.New(b, cfg)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("%s: VAE: %v", path, err)
	}
	return v, nil
}

// AttachNetwork hooks the modules of a network file (LoCon, LoCon with
// Tucker, or LoHa; any mix of ranks) onto the base model's layers, with
// multiplier te for the text-encoder modules and unet for the UNet's. Every
// module must match a layer of the model by kohya name and shape, or it is
// an error naming the file and the module. Networks attached one after the
// other add up on a layer they share.
func AttachNetwork(m Models, f *lycoris.File, te, unet float32) ([]*lycoris.Network, error) {
	lins := map[string]*nn.Linear{}
	convs := map[string]*nn.Conv2d{}
	ul, uc := m.UNet.Layers()
	for _, l := range ul {
		if n, err := lycoris.KohyaName(l.Key); err == nil {
			lins[n] = l
		}
	}
	for _, c := range uc {
		if n, err := lycoris.KohyaName(c.Key); err == nil {
			convs[n] = c
		}
	}
	for _, nl := range m.TE.Linears() {
		if n, err := lycoris.KohyaName(nl.L.Key); err == nil {
			lins[n] = nl.L
		}
	}
	// Group the modules: one lycoris.Network per (part, algo, Tucker, rank).
	type key struct {
		te, loha, tucker bool
		rank             int
	}
	groups := map[key][]*lycoris.FileModule{}
	var order []key
	var unmatched []string
	for _, fm := range f.Modules {
		_, isLin := lins[fm.Name]
		_, isConv := convs[fm.Name]
		if !isLin && !isConv {
			unmatched = append(unmatched, fm.Name)
			continue
		}
		k := key{te: strings.HasPrefix(fm.Name, "lora_te"), loha: fm.IsLoHa(), tucker: fm.Mid != nil, rank: fm.Rank()}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], fm)
	}
	if len(unmatched) > 0 {
		n := len(unmatched)
		if n > 4 {
			unmatched = append(unmatched[:4], "…")
		}
		return nil, fmt.Errorf("%s: %d of %d modules match no layer of the base model (not made for this SD 1.x model?): %s",
			f.Path, n, len(f.Modules), strings.Join(unmatched, ", "))
	}
	if len(f.Modules) == 0 {
		return nil, fmt.Errorf("%s: no network modules", f.Path)
	}
	var nets []*lycoris.Network
	fail := func(err error) ([]*lycoris.Network, error) {
		for i := len(nets) - 1; i >= 0; i-- {
			nets[i].Detach() // this file's networks come off again; earlier ones stay
		}
		return nil, err
	}
	for _, k := range order {
		var gl []*nn.Linear
		var gc []*nn.Conv2d
		for _, fm := range groups[k] {
			if l, ok := lins[fm.Name]; ok {
				gl = append(gl, l)
			} else {
				gc = append(gc, convs[fm.Name])
			}
		}
		algo := lycoris.AlgoLoCon
		if k.loha {
			algo = lycoris.AlgoLoHa
		}
		cfg := lycoris.Config{Algo: algo, Dim: k.rank, ConvDim: k.rank, Tucker: k.tucker, Multiplier: 1}
		// New hooks the layers on top of any network attached before
		// (their deltas add up); Detach takes exactly this one off.
		net, err := lycoris.New(m.E, cfg, gl, gc, rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			return fail(fmt.Errorf("%s: %v", f.Path, err))
		}
		nets = append(nets, net)
		if err := net.Load(&lycoris.File{Path: f.Path, Modules: groups[k], Metadata: f.Metadata}); err != nil {
			return fail(err)
		}
		net.Multiplier = unet
		if k.te {
			net.Multiplier = te
		}
	}
	return nets, nil
}
