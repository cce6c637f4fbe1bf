package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

// StateFormat is the version of loco's training-state file.
const StateFormat = 1

// stateMeta is the JSON stored under "loco_state" in a state file.
type stateMeta struct {
	Format     int          `json:"format"`
	Step       int          `json:"step"`
	Epoch      int          `json:"epoch"` // next micro-batch: Batch of Epoch (0-based)
	Batch      int          `json:"batch"`
	Seed       uint64       `json:"seed"`
	TotalSteps int          `json:"total_steps"`
	M          int          `json:"batches_per_epoch"`
	Layout     string       `json:"layout"` // sha256 of the network's entry list
	StartedAt  int64        `json:"started_at_us"`
	Recorder   lossRecorder `json:"loss_recorder"`
	LossScale  float64      `json:"loss_scale,omitempty"`
	GoodSteps  int          `json:"good_steps,omitempty"`
}

// StatePath is where SaveState writes: <output_dir>/<output_name>-state.safetensors.
func (t *Trainer) StatePath() string {
	return filepath.Join(t.Opt.OutputDir, t.Opt.OutputName+"-state.safetensors")
}

func (t *Trainer) layout() string {
	h := sha256.New()
	for _, en := range t.Net.Entries {
		fmt.Fprintf(h, "%s %v %d\n", en.Key, en.Shape, en.Offset)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SaveState writes the resumable state (network parameters, AdamW moments
// in float32, the position in the run, the loss recorder) atomically.
// Randomness needs no saved state: every draw derives from (seed, position).
func (t *Trainer) SaveState() (string, error) {
	path := t.StatePath()
	B := t.M.E.B
	get := func(s tensor.Storage) []float32 {
		v := make([]float32, s.Len())
		B.Download(v, s)
		return v
	}
	var ts []safetensors.Tensor
	for _, x := range []struct {
		name string
		s    tensor.Storage
	}{{"params", t.Net.Params}, {"adamw_m", t.m}, {"adamw_v", t.v}} {
		st, err := safetensors.FromFloat32(x.name, safetensors.F32, []int{x.s.Len()}, get(x.s))
		if err != nil {
			return "", err
		}
		ts = append(ts, st)
	}
	sm := stateMeta{Format: StateFormat, Step: t.Step, Epoch: t.Epoch, Batch: t.Batch, Seed: t.Opt.Seed,
		TotalSteps: t.Plan.TotalSteps, M: t.Plan.M, Layout: t.layout(), StartedAt: t.Meta.StartedAt.UnixMicro(),
		Recorder: t.rec, LossScale: t.LossScale, GoodSteps: t.goodSteps}
	js, err := json.Marshal(sm)
	if err != nil {
		return "", err
	}
	if err := safetensors.WriteFile(path, ts, map[string]string{"loco_state": string(js)}); err != nil {
		return "", fmt.Errorf("save state %s: %w", path, err)
	}
	if t.OnSave != nil {
		t.OnSave(path)
	}
	return path, nil
}

// LoadState restores a state written by SaveState for the same network,
// seed and plan; anything else is an error saying what differs.
func (t *Trainer) LoadState(path string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var sm stateMeta
	raw, ok := f.Metadata()["loco_state"]
	if !ok {
		return fmt.Errorf("%s: not a loco training state (no loco_state metadata); to start from a network file use --network-weights", path)
	}
	if err := json.Unmarshal([]byte(raw), &sm); err != nil {
		return fmt.Errorf("%s: loco_state: %v", path, err)
	}
	switch {
	case sm.Format != StateFormat:
		return fmt.Errorf("%s: state format %d, this loco reads %d", path, sm.Format, StateFormat)
	case sm.Layout != t.layout():
		return fmt.Errorf("%s: the state's network has other modules or ranks than this run's (check network_dim, conv_dim, preset and the learning rates)", path)
	case sm.Seed != t.Opt.Seed:
		return fmt.Errorf("%s: the state was trained with seed %d, this run has seed %d", path, sm.Seed, t.Opt.Seed)
	case sm.TotalSteps != t.Plan.TotalSteps || sm.M != t.Plan.M:
		return fmt.Errorf("%s: the state's run has %d steps of %d batches per epoch, this run %d of %d (data, batch size, epochs or accumulation changed)",
			path, sm.TotalSteps, sm.M, t.Plan.TotalSteps, t.Plan.M)
	}
	B := t.M.E.B
	for _, x := range []struct {
		name string
		s    tensor.Storage
	}{{"params", t.Net.Params}, {"adamw_m", t.m}, {"adamw_v", t.v}} {
		v, err := f.ReadFloat32(x.name)
		if err != nil {
			return err
		}
		if len(v) != x.s.Len() {
			return fmt.Errorf("%s: %s has %d values, the network %d", path, x.name, len(v), x.s.Len())
		}
		B.Upload(x.s, v)
	}
	t.Net.Touch()
	t.Net.ZeroGrad()
	t.Step, t.Epoch, t.Batch = sm.Step, sm.Epoch, sm.Batch
	t.LossScale, t.goodSteps = sm.LossScale, sm.GoodSteps
	t.Meta.StartedAt = time.UnixMicro(sm.StartedAt)
	if len(sm.Recorder.Losses) == t.Plan.M {
		t.rec = sm.Recorder
	}
	return nil
}
