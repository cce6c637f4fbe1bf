package train

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"loco/pkg/lycoris"
)

func TestCaptionProcess(t *testing.T) {
	const cap = "pralyco woman, red hair, smiling, outdoors, bokeh"
	r := func() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
	if got := (CaptionOptions{KeepTokens: 2}).Process(cap, CaptionAt{Epoch: 1}, r()); got != cap {
		t.Errorf("keep_tokens alone changed the caption: %q", got)
	}
	if got := (CaptionOptions{DropoutEveryNEpochs: 3}).Process(cap, CaptionAt{Epoch: 6}, r()); got != "" {
		t.Errorf("epoch 6 with caption_dropout_every_n_epochs 3: %q, want the empty caption", got)
	}
	if got := (CaptionOptions{DropoutEveryNEpochs: 3}).Process(cap, CaptionAt{Epoch: 5}, r()); got != cap {
		t.Errorf("epoch 5 with caption_dropout_every_n_epochs 3: %q", got)
	}
	// Shuffle: fixed head, a permutation of the rest, ", " joins.
	perms := map[string]bool{}
	rr := r()
	for i := 0; i < 200; i++ {
		got := (CaptionOptions{Shuffle: true, KeepTokens: 1}).Process(cap+" ,  ", CaptionAt{Epoch: 1}, rr)
		tags := strings.Split(got, ", ")
		if tags[0] != "pralyco woman" {
			t.Fatalf("kept token moved: %q", got)
		}
		s := append([]string(nil), tags[1:]...)
		sort.Strings(s)
		if strings.Join(s, "|") != "|bokeh|outdoors|red hair|smiling" {
			t.Fatalf("shuffled caption %q is not a permutation of the tags", got)
		}
		perms[got] = true
	}
	if len(perms) < 20 {
		t.Errorf("%d distinct shuffles of 5 tags in 200 draws", len(perms))
	}
	// Whole-caption and tag dropout rates.
	empty, tags := 0, 0
	rr = r()
	for i := 0; i < 2000; i++ {
		if (CaptionOptions{DropoutRate: 0.25}).Process(cap, CaptionAt{Epoch: 1}, rr) == "" {
			empty++
		}
		got := (CaptionOptions{TagDropoutRate: 0.5, KeepTokens: 1}).Process(cap, CaptionAt{Epoch: 1}, rr)
		if !strings.HasPrefix(got, "pralyco woman") {
			t.Fatalf("tag dropout dropped a kept token: %q", got)
		}
		tags += len(strings.Split(got, ", ")) - 1
	}
	if empty < 400 || empty > 600 {
		t.Errorf("caption_dropout_rate 0.25: %d of 2000 empty", empty)
	}
	if mean := float64(tags) / 2000; mean < 1.8 || mean > 2.2 {
		t.Errorf("caption_tag_dropout_rate 0.5 over 4 flexible tags: %.2f kept on average, want 2", mean)
	}
}

// TestCaptionOptionsInTraining: the captions reaching the text encoder are
// processed per sample, reproducibly, and the metadata says so.
func TestCaptionOptionsInTraining(t *testing.T) {
	tr, _ := tinyRun(t, t.TempDir(), func(o *Options) {
		o.Captions = CaptionOptions{DropoutRate: 0.5, DropoutEveryNEpochs: 2}
	})
	bs := tr.Plan.EpochBatches(tr.Opt.Seed, 0)
	empty, total := 0, 0
	for i, b := range bs {
		in, err := tr.BatchInputs(0, i, b)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := tr.BatchInputs(0, i, b)
		for k, c := range in.Captions {
			total++
			if c == "" {
				empty++
			} else if c != tr.Plan.Items[b.Items[k]].Rec.Caption {
				t.Errorf("caption %q changed without shuffling", c)
			}
			if again.Captions[k] != c {
				t.Errorf("batch %d: captions differ between two draws of the same position", i)
			}
		}
	}
	if empty == 0 || empty == total {
		t.Errorf("caption_dropout_rate 0.5: %d of %d captions empty", empty, total)
	}
	// Epoch 2 (index 1): every caption dropped.
	for i, b := range tr.Plan.EpochBatches(tr.Opt.Seed, 1) {
		in, _ := tr.BatchInputs(1, i, b)
		for _, c := range in.Captions {
			if c != "" {
				t.Fatalf("epoch 2 with caption_dropout_every_n_epochs 2: caption %q", c)
			}
		}
	}
	md := tr.Metadata(1)
	if md["ss_caption_dropout_rate"] != "0.5" || md["ss_caption_dropout_every_n_epochs"] != "2" || md["ss_shuffle_caption"] != "False" {
		t.Errorf("caption metadata: %q %q %q", md["ss_caption_dropout_rate"], md["ss_caption_dropout_every_n_epochs"], md["ss_shuffle_caption"])
	}
}

// TestDropoutTraining: with network, rank and module dropout the run is
// reproducible, differs from a run without, gives the same network with
// and without gradient checkpointing (the masks are recomputed
// identically), and the metadata records the dropouts as sd-scripts does.
func TestDropoutTraining(t *testing.T) {
	run := func(drop, ckpt bool) (*Trainer, []byte) {
		dir := t.TempDir()
		tr, _ := tinyRun(t, dir, func(o *Options) {
			o.Epochs = 1
			o.LearningRate = 1e-3
			o.SaveEveryNEpochs = 0
			o.SavePrecision = "float"
			o.GradientCheckpointing = ckpt
			if drop {
				o.NetworkDropout, o.RankDropout, o.ModuleDropout = 0.2, 0.25, 0.1
				o.NetworkArgs = []string{"conv_dim=4", "conv_alpha=4"}
			}
		})
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "tiny.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return tr, b
	}
	_, plain := run(false, false)
	d1, a := run(true, false)
	_, b := run(true, false)
	_, c := run(true, true)
	if !bytes.Equal(a, b) {
		t.Error("same seed with dropout: the files differ")
	}
	if bytes.Equal(a, plain) {
		t.Error("dropout changed nothing")
	}
	// Checkpointing changes the order of float sums (not bit-identical
	// even without dropout), so compare the factors: a recomputation with
	// other masks would differ as much as another seed does.
	ck, other := relDiff(t, a, c), relDiff(t, a, plain)
	t.Logf("relative L2 difference: checkpointing %.2g, no dropout %.2g", ck, other)
	if !(ck < 1e-4) || !(other > 100*ck) {
		t.Errorf("dropout with gradient checkpointing trains another network than without (relative L2 %.3g, vs %.3g without dropout)", ck, other)
	}
	md := d1.Metadata(1)
	if got, want := md["ss_network_args"], `{"conv_dim": "4", "conv_alpha": "4", "preset": "full", "algo": "locon", "rank_dropout": "0.25", "module_dropout": "0.1", "dropout": 0.2}`; got != want {
		t.Errorf("ss_network_args %s, want %s", got, want)
	}
	if md["ss_network_dropout"] != "0.2" {
		t.Errorf("ss_network_dropout %q", md["ss_network_dropout"])
	}
}

func TestSaveLastN(t *testing.T) {
	for _, c := range []struct{ e, every, keep, want int }{{2, 1, 1, 1}, {3, 1, 2, 1}, {2, 2, 1, 0}, {4, 2, 1, 2}, {5, 1, 0, 0}} {
		if got := removeEpochNo(c.e, c.every, c.keep); got != c.want {
			t.Errorf("removeEpochNo(%d, %d, %d) = %d, want %d", c.e, c.every, c.keep, got, c.want)
		}
	}
	for _, c := range []struct{ s, every, keep, want int }{{5, 1, 2, 2}, {3, 1, 2, 0}, {10, 2, 3, 6}, {9, 2, 3, 4}, {7, 1, 0, 0}} {
		if got := removeStepNo(c.s, c.every, c.keep); got != c.want {
			t.Errorf("removeStepNo(%d, %d, %d) = %d, want %d", c.s, c.every, c.keep, got, c.want)
		}
	}
	dir := t.TempDir()
	tr, _ := tinyRun(t, dir, func(o *Options) {
		o.Epochs = 3
		o.SaveEveryNEpochs, o.SaveLastNEpochs = 1, 1
		o.SaveEveryNSteps, o.SaveLastNSteps = 1, 2
	})
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tr.Plan.TotalSteps != 9 {
		t.Fatalf("%d steps, the test expects 9", tr.Plan.TotalSteps)
	}
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	// Epochs: 1 and 2 saved, 1 removed when 2 was saved, 3 is the plain
	// file. Steps 1…8 saved, each removing s−3: 6, 7, 8 remain.
	want := []string{"tiny-000002.safetensors", "tiny-step00000006.safetensors", "tiny-step00000007.safetensors",
		"tiny-step00000008.safetensors", "tiny.safetensors"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("files %v, want %v", got, want)
	}
}

// TestNetworkWeights starts runs from a saved network: matching modules
// take its values and alphas, modules only in one of them are reported,
// and a rank mismatch is an error naming the tensor.
func TestNetworkWeights(t *testing.T) {
	dir := t.TempDir()
	a, _ := tinyRun(t, dir, func(o *Options) { o.Epochs, o.SaveEveryNEpochs, o.NetworkAlpha = 1, 0, 2 })
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tiny.safetensors")
	f, err := lycoris.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tinyRun(t, t.TempDir(), func(o *Options) { o.NetworkWeights = path })
	if b.Weights == nil || b.Weights.Loaded != len(f.Modules) || len(b.Weights.Missing)+len(b.Weights.Unexpected) != 0 {
		t.Fatalf("report %v, want all %d modules loaded", b.Weights, len(f.Modules))
	}
	nonzero := false
	for _, fm := range f.Modules {
		got, err := b.Net.Values(fm.Name+".lora_up.weight", false)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != fm.Up[i] {
				t.Fatalf("%s.lora_up.weight[%d] = %v, file %v", fm.Name, i, got[i], fm.Up[i])
			}
			nonzero = nonzero || got[i] != 0
		}
	}
	if !nonzero {
		t.Fatal("the trained file has all-zero lora_up: nothing was tested")
	}
	for _, m := range b.Net.Modules {
		if fm, _ := f.Module(m.Name); m.Alpha != fm.Alpha {
			t.Fatalf("%s: alpha %v, file %v", m.Name, m.Alpha, fm.Alpha)
		}
	}
	// UNet only: the file's text-encoder modules are reported and ignored.
	c, _ := tinyRun(t, t.TempDir(), func(o *Options) { o.NetworkWeights, o.TextEncoderLR = path, 0 })
	if len(c.Weights.Unexpected) == 0 || c.Weights.Loaded != len(c.Net.Modules) || !strings.HasPrefix(c.Weights.Unexpected[0], "lora_te_") {
		t.Errorf("UNet-only run from a TE+UNet file: %v", c.Weights)
	}
	t.Log(c.Weights)
	// Another rank: an error naming the tensor and the option.
	opt := a.Opt
	opt.NetworkDim, opt.NetworkWeights = 4, path
	_, err = New(opt, a.Plan, tinyModels(t), nil)
	if err == nil || !strings.Contains(err.Error(), "lora_down.weight has shape") || !strings.Contains(err.Error(), "network_dim") {
		t.Errorf("rank mismatch: %v", err)
	}
	opt.NetworkDim, opt.NetworkWeights = 8, filepath.Join(dir, "missing.safetensors")
	if _, err := New(opt, a.Plan, tinyModels(t), nil); err == nil || !strings.Contains(err.Error(), "missing.safetensors") {
		t.Errorf("missing file: %v", err)
	}
}

func TestImportGUIConfigDropoutCaptionsWeights(t *testing.T) {
	g, err := ImportGUIConfig([]byte(`{"LoRA_type": "LyCORIS/LoCon", "network_dropout": 0.1, "rank_dropout": "0.2", "module_dropout": 0.05,
		"shuffle_caption": true, "keep_tokens": "1", "caption_dropout_rate": 0.1, "caption_dropout_every_n_epochs": 3,
		"save_every_n_epochs": 1, "save_last_n_epochs": 2, "network_weights": "old.safetensors", "dim_from_weights": false}`), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := g.Options
	if o.NetworkDropout != 0.1 || o.RankDropout != 0.2 || o.ModuleDropout != 0.05 || !o.Captions.Shuffle || o.Captions.KeepTokens != 1 ||
		o.Captions.DropoutRate != 0.1 || o.Captions.DropoutEveryNEpochs != 3 || o.SaveLastNEpochs != 2 || o.NetworkWeights != "old.safetensors" {
		t.Errorf("imported %+v", o)
	}
	for _, c := range []struct{ json, want string }{
		{`{"dim_from_weights": true}`, "dim_from_weights needs network_weights"},
		{`{"rank_dropout": 1.5}`, "rank_dropout 1.5"},
		{`{"LoRA_type": "LyCORIS/LoHa", "network_dropout": 0.1}`, "loha"},
		{`{"save_last_n_steps": 3}`, "needs save_every_n_steps"},
	} {
		if _, err := ImportGUIConfig([]byte(c.json), DefaultOptions()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.json, err, c.want)
		}
	}
}

// relDiff is the relative L2 difference of the factors of two network files.
func relDiff(t *testing.T, a, b []byte) float64 {
	t.Helper()
	read := func(raw []byte) *lycoris.File {
		p := filepath.Join(t.TempDir(), "n.safetensors")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := lycoris.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	fa, fb := read(a), read(b)
	var num, den float64
	for _, ma := range fa.Modules {
		mb, ok := fb.Module(ma.Name)
		if !ok {
			t.Fatalf("module %s missing", ma.Name)
		}
		for _, p := range [][2][]float32{{ma.Down, mb.Down}, {ma.Up, mb.Up}} {
			for i := range p[0] {
				d := float64(p[0][i]) - float64(p[1][i])
				num += d * d
				den += float64(p[0][i]) * float64(p[0][i])
			}
		}
	}
	return math.Sqrt(num / den)
}
