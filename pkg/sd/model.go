package sd

import (
	"fmt"
	"os"

	"loco/pkg/nn"
	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

// WeightSource is what both kinds of base model give the model packages:
// tensors by single-file key, and afterwards the tensors nobody loaded.
type WeightSource interface {
	nn.Source
	// Unexpected lists the tensors of the models under the single-file
	// prefix that were not loaded and are not on the ignore list.
	Unexpected(prefix string) []string
}

// Model is an open base model, a single-file checkpoint or a diffusers
// folder, seen in the single-file key space.
type Model struct {
	Path string
	// Exactly one of these is set.
	Checkpoint *Checkpoint
	Diffusers  *Diffusers
}

// Open opens path as a single-file checkpoint (OpenCheckpoint) or, when
// it is a folder, as a diffusers folder (OpenDiffusers).
func Open(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		ck, err := OpenCheckpoint(path)
		if err != nil {
			return nil, err
		}
		return &Model{Path: path, Checkpoint: ck}, nil
	}
	if !IsDiffusers(path) {
		return nil, fmt.Errorf("%s: a folder that is not a diffusers model (no model_index.json, no unet/)", path)
	}
	d, err := OpenDiffusers(path)
	if err != nil {
		return nil, err
	}
	return &Model{Path: path, Diffusers: d}, nil
}

// Info describes a tensor by its single-file name, with its single-file
// shape.
func (m *Model) Info(key string) (safetensors.TensorInfo, bool) {
	if m.Diffusers != nil {
		return m.Diffusers.Info(key)
	}
	return m.Checkpoint.F.Info(key)
}

// Names lists the single-file names of the model's tensors, sorted.
func (m *Model) Names() []string {
	if m.Diffusers != nil {
		return m.Diffusers.Names()
	}
	return m.Checkpoint.F.Names()
}

// Source returns the weight source (converting to dt while reading).
func (m *Model) Source(e *tensor.Engine, dt tensor.DType) WeightSource {
	if m.Diffusers != nil {
		return m.Diffusers.Source(e, dt)
	}
	return m.Checkpoint.Source(e, dt)
}

// Close releases the files.
func (m *Model) Close() error {
	if m.Diffusers != nil {
		return m.Diffusers.Close()
	}
	return m.Checkpoint.Close()
}
