package sd

import (
	"fmt"
	"sort"

	"loco/pkg/safetensors"
	"loco/pkg/tensor"
)

// FileSource loads model weights from one safetensors file into an engine,
// converting each tensor to the engine's weight dtype as it is read (so peak
// memory is one converted model, never the file plus a copy). It records
// which keys were consumed so that unexpected keys can be reported.
type FileSource struct {
	F     *safetensors.File
	E     *tensor.Engine
	DType tensor.DType // storage dtype of loaded weights (F32 on the CPU)

	used map[string]bool
}

// NewFileSource wraps an open file.
func NewFileSource(f *safetensors.File, e *tensor.Engine, dt tensor.DType) *FileSource {
	return &FileSource{F: f, E: e, DType: dt, used: map[string]bool{}}
}

// Load implements nn.Source.
func (s *FileSource) Load(key string, shape tensor.Shape) (*tensor.Tensor, error) {
	info, ok := s.F.Info(key)
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %s (shape %v)", s.F.Path(), key, shape)
	}
	if !tensor.Shape(info.Shape).Equal(shape) {
		return nil, fmt.Errorf("%s: tensor %s has shape %v, want %v", s.F.Path(), key, tensor.Shape(info.Shape), shape)
	}
	t, err := loadTensor(s.F, key, s.E, s.DType, shape)
	if err != nil {
		return nil, err
	}
	s.used[key] = true
	return t, nil
}

// hostFloat32s is implemented by backends whose F32 storage is host memory
// (the CPU backend): the loader reads a tensor straight into it.
type hostFloat32s interface {
	HostFloat32s(tensor.Storage) []float32
}

// loadTensor reads tensor key of f into new persistent storage of dtype dt
// on e — straight into the storage where the backend keeps F32 in host
// memory, else through one temporary float32 slice — and then releases
// the file's pages of it (safetensors.File.Release), so that loading a
// model does not also keep the whole mapped file resident.
func loadTensor(f *safetensors.File, key string, e *tensor.Engine, dt tensor.DType, shape tensor.Shape) (*tensor.Tensor, error) {
	defer f.Release(key)
	if h, ok := e.B.(hostFloat32s); ok && dt == tensor.F32 {
		st := e.B.Alloc(dt, shape.Numel())
		if err := f.ReadFloat32Into(key, h.HostFloat32s(st)); err != nil {
			e.B.Free(st)
			return nil, err
		}
		return e.Wrap(st, shape...), nil
	}
	v, err := f.ReadFloat32(key)
	if err != nil {
		return nil, err
	}
	return e.Persistent(dt, v, shape...), nil
}

// Unused lists the file's keys under prefix that were not loaded, sorted.
func (s *FileSource) Unused(prefix string) []string {
	var out []string
	for _, k := range s.F.Names() {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix && !s.used[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
