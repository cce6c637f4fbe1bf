package train

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"loco/pkg/backend/cpu"
	"loco/pkg/golden"
	"loco/pkg/lycoris"
	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
	"loco/pkg/sd/clip"
	"loco/pkg/sd/unet"
	"loco/pkg/tensor"
	"loco/pkg/tokenizer"
	"loco/pkg/train/traintest"
)

var (
	tokOnce sync.Once
	tok     *tokenizer.Tokenizer
	tokErr  error
)

func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	p, ok := golden.Shared("clip/bpe_simple_vocab_16e6.txt.gz")
	if !ok {
		t.Skip("../shared/clip not found: skipping the training tests that need the CLIP vocabulary")
	}
	tokOnce.Do(func() { tok, tokErr = tokenizer.Load(p) })
	if tokErr != nil {
		t.Fatal(tokErr)
	}
	return tok
}

// tinyModels builds the tiny UNet and text encoder with random weights.
func tinyModels(t testing.TB) Models {
	e := tensor.NewEngine(cpu.New())
	u, err := unet.New(nn.NewBuilder(sd.UNetPrefix, &sd.RandomSource{E: e, DType: tensor.F32, Seed: 11}), traintest.UNet())
	if err != nil {
		t.Fatal(err)
	}
	tb := nn.NewBuilder(sd.TEPrefix, &sd.RandomSource{E: e, DType: tensor.F32, Seed: 12})
	te := clip.New(tb, traintest.CLIP())
	if tb.Err() != nil {
		t.Fatal(tb.Err())
	}
	return Models{E: e, UNet: u, TE: te, Tok: testTokenizer(t)}
}

// tinyRun is a scaled-down recipe: 3 train images × 2 repeats, 4 reg
// images, one 192×128 bucket (latents 16×24), batch 2, GA 2.
func tinyRun(t testing.TB, dir string, mutate func(*Options)) (*Trainer, traintest.Latents) {
	recs := recipeRecords(3, 4, [2]int{192, 128})
	for _, r := range recs {
		if !r.IsReg {
			r.Repeats = 2
		}
	}
	lat := traintest.Latents{}
	for i, r := range recs {
		var k string
		_ = k
		key := string(r.Extra["latent_key"][1 : len(r.Extra["latent_key"])-1])
		lat.Add(key, 16, 24, uint64(i+1), 0)
	}
	opt := DefaultOptions()
	opt.NetworkDim, opt.NetworkAlpha, opt.ConvDim, opt.ConvAlpha = 8, 4, 4, 4
	opt.BatchSize, opt.GradAccum, opt.Epochs = 2, 2, 2
	opt.MultiresIterations, opt.MultiresDiscount = 10, 0.1
	opt.Seed = 1234
	opt.OutputDir, opt.OutputName = dir, "tiny"
	opt.SaveEveryNEpochs = 1
	opt.TrainingComment = "trigger: pralyco"
	opt.LRWarmup = 0.1
	if mutate != nil {
		mutate(&opt)
	}
	p, err := NewPlan(recs, "latent_key", opt.BatchSize, opt.GradAccum, opt.Epochs, opt.MaxTrainSteps)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(opt, p, tinyModels(t), lat)
	if err != nil {
		t.Fatal(err)
	}
	tr.Clock = func() time.Time { return time.Unix(1700000000, 0).UTC() }
	return tr, lat
}

// fixedBatchLosses trains n updates on the first batch of epoch 0 and
// returns the loss before each.
func fixedBatchLosses(t *testing.T, tr *Trainer, n int) []float64 {
	t.Helper()
	bs := tr.Plan.EpochBatches(tr.Opt.Seed, 0)
	in, err := tr.BatchInputs(0, 0, bs[0])
	if err != nil {
		t.Fatal(err)
	}
	losses := make([]float64, 0, n)
	for range n {
		l, err := tr.ForwardBackward(in, 1)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
		if _, _, err := tr.update(); err != nil {
			t.Fatal(err)
		}
		tr.Step++
	}
	return losses
}

func TestLossFallsOnFixedBatch(t *testing.T) {
	tr, _ := tinyRun(t, t.TempDir(), func(o *Options) {
		o.LearningRate = 3e-3
		o.LRScheduler = "constant"
		o.LRWarmup = 0
		o.MultiresIterations = 0
	})
	losses := fixedBatchLosses(t, tr, 30)
	first, last := losses[0], losses[len(losses)-1]
	t.Logf("loss %v → %v", first, last)
	if !(last < 0.7*first) {
		t.Errorf("loss did not fall clearly over 30 steps on a fixed batch: %v", losses)
	}
}

func TestRunDeterministicAndResume(t *testing.T) {
	d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
	a, _ := tinyRun(t, d1, nil)
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := a.Plan.TotalSteps
	if total != 2*a.Plan.U || a.Step != total {
		t.Fatalf("ran %d of %d steps", a.Step, total)
	}
	for _, name := range []string{"tiny.safetensors", "tiny-000001.safetensors"} {
		if _, err := os.Stat(filepath.Join(d1, name)); err != nil {
			t.Errorf("missing %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(d1, "tiny-000002.safetensors")); err == nil {
		t.Error("the last epoch was saved under an epoch name (kohya saves it as the plain name)")
	}
	want, _ := os.ReadFile(filepath.Join(d1, "tiny.safetensors"))

	b, _ := tinyRun(t, d2, nil)
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(d2, "tiny.safetensors")); !bytes.Equal(got, want) {
		t.Error("same seed: the output files differ")
	}

	// Interrupt after 2 updates, resume in a fresh trainer.
	c, _ := tinyRun(t, d3, nil)
	ctx, cancel := context.WithCancel(context.Background())
	c.OnUpdate = func(u Update) error {
		if u.Step == 2 {
			cancel()
		}
		return nil
	}
	if err := c.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	if c.Step != 2 {
		t.Fatalf("interrupted at step %d", c.Step)
	}
	r, _ := tinyRun(t, d3, nil)
	if err := r.LoadState(r.StatePath()); err != nil {
		t.Fatal(err)
	}
	if r.Step != 2 {
		t.Fatalf("resumed at step %d", r.Step)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(d3, "tiny.safetensors")); !bytes.Equal(got, want) {
		t.Error("interrupted and resumed run differs from the uninterrupted one")
	}

	// The file loads back, with the recipe's metadata.
	f, err := lycoris.ReadFile(filepath.Join(d1, "tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Modules) != len(a.Net.Modules) {
		t.Errorf("%d modules in the file, network has %d", len(f.Modules), len(a.Net.Modules))
	}
	for k, v := range map[string]string{"ss_training_comment": "trigger: pralyco", "ss_epoch": "2", "ss_network_dim": "8",
		"ss_network_alpha": "4.0", "ss_multires_noise_iterations": "10", "ss_multires_noise_discount": "0.1",
		"ss_num_train_images": "6", "ss_num_reg_images": "4",
		"ss_network_args":        `{"preset": "full", "conv_dim": "4", "conv_alpha": "4", "algo": "locon", "dropout": null}`,
		"ss_dataset_dirs":        `{"30_pralyco woman": {"n_repeats": 2, "img_count": 3}}`,
		"ss_tag_frequency":       `{"30_pralyco woman": {"pralyco woman": 3}, "1_woman": {"woman": 4}}`,
		"ss_bucket_info":         `{"buckets": {"0": {"resolution": [192, 128], "count": 12}}, "mean_img_ar_error": 0.0}`,
		"modelspec.architecture": "stable-diffusion-v1/lora"} {
		if got := f.Metadata[k]; got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(f.Metadata["sshs_model_hash"]) != 64 {
		t.Error("no sshs_model_hash")
	}
}

func TestNaNLossStops(t *testing.T) {
	dir := t.TempDir()
	tr, lat := tinyRun(t, dir, nil)
	// One image's cached latent overflows fp16 (Inf): its batch must stop
	// the run, naming the step, with the last good state saved.
	lat.Add(tr.Plan.Items[1].Key, 16, 24, 9, 1e6)
	before := make([]float32, tr.Net.Len())
	tr.M.E.B.Download(before, tr.Net.Params)
	err := tr.Run(context.Background())
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a StepError", err)
	}
	t.Log(err)
	if se.State == "" {
		t.Fatal("no state saved")
	}
	if _, err := os.Stat(filepath.Join(dir, "tiny.safetensors")); err == nil {
		t.Error("a final network was written after a NaN loss")
	}
	r, _ := tinyRun(t, dir, nil)
	if err := r.LoadState(se.State); err != nil {
		t.Fatal(err)
	}
	if r.Step != se.Step-1 {
		t.Errorf("state at step %d, error at step %d", r.Step, se.Step)
	}
	got := make([]float32, r.Net.Len())
	r.M.E.B.Download(got, r.Net.Params)
	for _, v := range got {
		if v != v {
			t.Fatal("the saved state holds NaN parameters")
		}
	}
}

// TestLoHaAndTuckerRuns trains the scaled-down recipe with algo=loha and
// with Tucker convolutions: the loss falls on a fixed batch and the saved
// file holds the algorithm's tensors.
func TestLoHaAndTuckerRuns(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		key    string
	}{
		{"loha", func(o *Options) { o.Algo = "loha" }, ".hada_w1_a"},
		{"tucker", func(o *Options) { o.Tucker = true }, ".lora_mid.weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tr, _ := tinyRun(t, dir, func(o *Options) {
				tc.mutate(o)
				o.LearningRate = 3e-3
				o.LRScheduler = "constant"
				o.LRWarmup = 0
				o.MultiresIterations = 0
				o.Epochs = 1
			})
			losses := fixedBatchLosses(t, tr, 15)
			if !(losses[len(losses)-1] < 0.9*losses[0]) {
				t.Errorf("loss did not fall: %v", losses)
			}
			path := filepath.Join(dir, "net.safetensors")
			if err := tr.Net.Save(path, safetensors.F32, tr.Metadata(1)); err != nil {
				t.Fatal(err)
			}
			f, err := lycoris.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range f.Modules {
				if (tc.key == ".hada_w1_a" && m.IsLoHa()) || (tc.key == ".lora_mid.weight" && m.Mid != nil) {
					found = true
				}
			}
			if !found {
				t.Errorf("saved file has no %s tensors", tc.key)
			}
		})
	}
}
