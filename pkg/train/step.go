package train

import (
	"fmt"
	"math"
	"math/rand/v2"

	"loco/pkg/latentcache"
	"loco/pkg/tensor"
)

// latent returns the cached entry of key (kept in memory after the first read).
func (t *Trainer) latent(key string) (*latentcache.Entry, error) {
	if en, ok := t.latCache[key]; ok {
		return en, nil
	}
	en, err := t.Lat.Get(key)
	if err != nil {
		return nil, err
	}
	t.latCache[key] = en
	return en, nil
}

// Inputs are the host-side tensors of one micro-batch: everything random
// about it, drawn from Stream(seed, "batch", epoch, index).
type Inputs struct {
	B, C, H, W int
	X0         []float32 // scaled latents [B,C,H,W]
	Noise      []float32 // ε, the target (after offset and pyramid noise)
	Noisy      []float32 // x_t
	Timesteps  []int
	Weights    []float32 // per-sample loss weights (prior loss × min-SNR)
	Captions   []string  // after the caption options (shuffle, dropout ...)
	// DropoutSeed seeds the network's dropout masks for this micro-batch
	// (Stream(seed, "dropout", epoch, index); 0 without dropouts).
	DropoutSeed uint64
}

// BatchInputs draws the inputs of micro-batch i of epoch e in the order of
// spec/train.md §2: latent samples, noise, offset, pyramid noise, timesteps,
// forward diffusion.
func (t *Trainer) BatchInputs(e, i int, b Batch) (*Inputs, error) {
	r := Stream(t.Opt.Seed, "batch", e, i)
	in := &Inputs{B: len(b.Items)}
	var cr *rand.Rand // caption draws, on their own stream
	if t.Opt.Captions.Random() {
		cr = Stream(t.Opt.Seed, "caption", e, i)
	}
	// The optimizer step this micro-batch belongs to: U updates per epoch,
	// one after every GA micro-batches (and the epoch's last).
	at := CaptionAt{Epoch: e + 1, Step: e*t.Plan.U + i/t.Plan.GradAccum, MaxSteps: t.Plan.TotalSteps}
	if t.dropout().Any() {
		in.DropoutSeed = Stream(t.Opt.Seed, "dropout", e, i).Uint64()
	}
	for k, idx := range b.Items {
		it := t.Plan.Items[idx]
		en, err := t.latent(it.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: latent %s: %w", it.Rec.Path, it.Key, err)
		}
		if en.Shape[0] != 4 {
			return nil, fmt.Errorf("%s: cached latent has %d channels; the SD 1.x UNet takes 4 (a cache made for another model?)", it.Rec.Path, en.Shape[0])
		}
		if k == 0 {
			in.C, in.H, in.W = en.Shape[0], en.Shape[1], en.Shape[2]
			in.X0 = make([]float32, in.B*in.C*in.H*in.W)
		} else if en.Shape != [3]int{in.C, in.H, in.W} {
			return nil, fmt.Errorf("%s: cached latent %v differs from the batch's %v (bucket %v)", it.Rec.Path, en.Shape, [3]int{in.C, in.H, in.W}, b.Bucket)
		}
		flip := t.Opt.FlipAug && en.HasFlip() && r.IntN(2) == 1
		mean, logvar, err := en.Latent(flip)
		if err != nil {
			return nil, fmt.Errorf("%s: latent %s: %w", it.Rec.Path, it.Key, err)
		}
		n := in.C * in.H * in.W
		SampleLatent(in.X0[k*n:(k+1)*n], mean, logvar, r)
		w := 1.0
		if it.Rec.IsReg {
			w = t.Opt.PriorLossWeight
		}
		in.Weights = append(in.Weights, float32(w))
		in.Captions = append(in.Captions, t.Opt.Captions.Process(it.Rec.Caption, at, cr))
	}
	hw := in.H * in.W
	in.Noise = make([]float32, len(in.X0))
	normals(r, in.Noise)
	t.Opt.Noise.ApplyOffset(r, in.Noise, in.X0, in.B, in.C, hw)
	PyramidNoise(r, in.Noise, in.B, in.C, in.H, in.W, t.Opt.MultiresIterations, t.Opt.MultiresDiscount)
	in.Timesteps = Timesteps(r, in.B, t.Opt.MinTimestep, t.Opt.MaxTimestep)
	in.Noisy = make([]float32, len(in.X0))
	n := in.C * hw
	for k, ts := range in.Timesteps {
		if ts > 999 {
			ts = 999
		}
		in.Timesteps[k] = ts
		t.Sched.AddNoise(in.Noisy[k*n:(k+1)*n], in.X0[k*n:(k+1)*n], in.Noise[k*n:(k+1)*n], ts)
		in.Weights[k] *= float32(t.Sched.MinSNRWeight(ts, t.Opt.MinSNRGamma))
	}
	return in, nil
}

// microBatch runs forward and backward of one micro-batch (loss / GA) and
// returns its loss.
func (t *Trainer) microBatch(e, i int, b Batch) (float64, error) {
	in, err := t.BatchInputs(e, i, b)
	if err != nil {
		return 0, err
	}
	return t.ForwardBackward(in, float32(t.lossScale()/float64(t.Plan.GradAccum)))
}

// ForwardBackward computes the weighted loss of in and, if it is finite,
// adds its gradient times seed into the network's gradient buffer. The
// step's temporaries are released before it returns.
func (t *Trainer) ForwardBackward(in *Inputs, seed float32) (loss float64, err error) {
	E := t.M.E
	defer E.EndStep()
	if t.dropout().Any() {
		t.Net.Train(in.DropoutSeed)
		defer t.Net.Eval()
	}
	err = tensor.Catch(func() {
		ctx := t.condition(in.Captions)
		x := E.FromFloat32(in.Noisy, in.B, in.C, in.H, in.W)
		ts := make([]float32, in.B)
		for k, v := range in.Timesteps {
			ts[k] = float32(v)
		}
		pred := t.M.UNet.Forward(x, ts, ctx)
		if pred.DType() != tensor.F32 {
			pred = tensor.Cast(pred, tensor.F32)
		}
		target := E.FromFloat32Of(tensor.F32, in.Noise, in.B, in.C, in.H, in.W)
		l := tensor.MSELoss(pred, target, in.Weights)
		loss = float64(l.Item())
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return
		}
		E.Backward(l, seed)
	})
	return loss, err
}

// condition returns the UNet's context for the captions: with gradients
// when the text encoder is trained, otherwise from a per-caption cache of
// the frozen encoder's output.
func (t *Trainer) condition(captions []string) *tensor.Tensor {
	E := t.M.E
	if t.TrainsTE() {
		return t.encode(captions)
	}
	var host []float32
	var s, w int
	for _, c := range captions {
		v, ok := t.ctxCache[c]
		if !ok {
			E.NoGrad(func() {
				h := t.encode([]string{c})
				v = h.Float32s()
			})
			// Shuffled or tag-dropped captions rarely repeat: cache only
			// the captions as written (CaptionOptions.Plain) and the
			// dropped (empty) one.
			if !t.Opt.Captions.Random() || c == "" || t.rawCaptions[c] {
				t.ctxCache[c] = v
			}
		}
		host = append(host, v...)
	}
	w = t.M.TE.Cfg.Width
	s = len(host) / len(captions) / w
	return E.FromFloat32(host, len(captions), s, w)
}

// encode runs the text encoder on captions with clip skip and
// max_token_length (spec/train.md §7): n chunks of 77 per caption, encoded
// independently, concatenated as BOS of the first chunk, positions 1…75 of
// every chunk, and the last position of the last chunk.
func (t *Trainer) encode(captions []string) *tensor.Tensor {
	var ids [][]int32
	n := 1
	for _, c := range captions {
		ch, err := t.M.Tok.Chunks(c, t.Opt.MaxTokenLength)
		if err != nil {
			panic(err)
		}
		n = len(ch)
		ids = append(ids, ch...)
	}
	h := t.M.TE.Encode(ids, t.Opt.ClipSkip) // [B·n, 77, W]
	if n == 1 {
		return h
	}
	sh := h.Shape()
	l, w := sh[1], sh[2]
	h = tensor.Reshape(h, len(captions), n*l, w)
	parts := []*tensor.Tensor{tensor.Slice(h, 1, 0, 1)}
	for j := 0; j < n; j++ {
		parts = append(parts, tensor.Slice(h, 1, j*l+1, (j+1)*l-1))
	}
	parts = append(parts, tensor.Slice(h, 1, n*l-1, n*l))
	return tensor.Concat(1, parts...)
}

// Dynamic loss scaling constants (torch.cuda.amp.GradScaler defaults).
const (
	InitialLossScale    = 65536
	ScaleGrowthInterval = 2000
)

// dynamicScaling reports whether the engine computes in F16, which needs
// loss scaling (BF16 and F32 have float32's range).
func (t *Trainer) dynamicScaling() bool { return t.M.E.Act == tensor.F16 }

// lossScale is the current loss scale (1 without dynamic scaling).
func (t *Trainer) lossScale() float64 {
	if !t.dynamicScaling() {
		return 1
	}
	if t.LossScale == 0 {
		t.LossScale = InitialLossScale
	}
	return t.LossScale
}

// update clips the accumulated gradients, runs AdamW per group at the
// scheduled learning rate and zeroes the gradients. It returns the LRs
// used and the gradient norm before clipping.
func (t *Trainer) update() ([]float64, float64, error) {
	B := t.M.E.B
	ls := t.lossScale()
	ss := B.SumSquares(t.Net.Grads)
	norm := math.Sqrt(ss) / ls
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		if t.dynamicScaling() {
			// fp16 overflow: skip this update, halve the scale.
			t.LossScale = ls / 2
			t.goodSteps = 0
			t.Skipped++
			t.Net.ZeroGrad()
			if t.Log != nil {
				t.Log("step %d: gradients overflowed in fp16; update skipped, loss scale now %g", t.Step+1, t.LossScale)
			}
			lrs := make([]float64, len(t.groups))
			return lrs, norm, B.Sync()
		}
		return nil, norm, fmt.Errorf("gradient norm is %v", norm)
	}
	scale := 1.0
	if t.Opt.MaxGradNorm > 0 {
		scale = math.Min(1, t.Opt.MaxGradNorm/(norm+1e-6))
	}
	scale /= ls
	if t.dynamicScaling() {
		if t.goodSteps++; t.goodSteps >= ScaleGrowthInterval {
			t.LossScale, t.goodSteps = ls*2, 0
		}
	}
	k := t.Step
	lrs := make([]float64, len(t.groups))
	for gi, g := range t.groups {
		lr := g.LR * t.LR.Multiplier(k)
		lrs[gi] = lr
		for _, r := range g.Ranges {
			B.AdamW(B.View(t.Net.Params, r[0], r[1]), B.View(t.Net.Grads, r[0], r[1]),
				B.View(t.m, r[0], r[1]), B.View(t.v, r[0], r[1]), tensor.AdamWParams{
					LR: float32(lr), Beta1: float32(t.Opt.Beta1), Beta2: float32(t.Opt.Beta2), Eps: float32(t.Opt.Eps),
					WeightDecay: float32(t.Opt.WDecay), Step: k + 1, GradScale: float32(scale)})
		}
	}
	t.Net.ZeroGrad()
	if err := B.Sync(); err != nil {
		return nil, norm, err
	}
	return lrs, norm, nil
}

// lossRecorder is kohya's avr_loss: the mean of all micro-batch losses in
// the first epoch, then a moving mean over the last M micro-batches.
type lossRecorder struct {
	Losses []float64 `json:"losses"` // by position in the epoch
	Filled int       `json:"filled"` // positions holding a value
	Sum    float64   `json:"sum"`
}

func newLossRecorder(m int) lossRecorder { return lossRecorder{Losses: make([]float64, m)} }

func (r *lossRecorder) add(epoch, i int, loss float64) {
	if i >= len(r.Losses) {
		return
	}
	if epoch == 0 && r.Filled <= i {
		r.Filled = i + 1
	} else {
		r.Sum -= r.Losses[i]
	}
	r.Losses[i] = loss
	r.Sum += loss
}

func (r *lossRecorder) avg() float64 {
	if r.Filled == 0 {
		return 0
	}
	return r.Sum / float64(r.Filled)
}
