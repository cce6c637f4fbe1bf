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
	v, err := s.F.ReadFloat32(key)
	if err != nil {
		return nil, err
	}
	s.used[key] = true
	return s.E.Persistent(s.DType, v, shape...), nil
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
