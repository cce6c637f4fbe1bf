package merge

import (
	"fmt"
	"sort"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
)

// moduleTensors lays modules out as LoCon file tensors in dtype dt:
// lora_down, lora_up, lora_mid (when present) and a 0-dim alpha (when the
// module has one).
func moduleTensors(mods []*lycoris.FileModule, dt safetensors.DType) ([]safetensors.Tensor, error) {
	var out []safetensors.Tensor
	add := func(name string, shape []int, v []float32) error {
		t, err := safetensors.FromFloat32(name, dt, shape, v)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, t)
		return nil
	}
	for _, m := range mods {
		if err := add(m.Name+".lora_down.weight", m.DownShape, m.Down); err != nil {
			return nil, err
		}
		if err := add(m.Name+".lora_up.weight", m.UpShape, m.Up); err != nil {
			return nil, err
		}
		if m.Mid != nil {
			if err := add(m.Name+".lora_mid.weight", m.MidShape, m.Mid); err != nil {
				return nil, err
			}
		}
		if m.HasAlpha {
			if err := add(m.Name+".alpha", []int{}, []float32{m.Alpha}); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// SaveNetwork writes modules as a LoCon file (atomically) with metadata md
// plus the kohya hashes computed on the written tensors.
func SaveNetwork(path string, mods []*lycoris.FileModule, dt safetensors.DType, md map[string]string) error {
	ts, err := moduleTensors(mods, dt)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	meta, err := lycoris.WithHashes(ts, md)
	if err != nil {
		return err
	}
	return safetensors.WriteFile(path, ts, meta)
}

// networkDType is the dtype of a network file's lora_down tensors (F32 when
// unknown).
func networkDType(path string) safetensors.DType {
	f, err := safetensors.Open(path)
	if err != nil {
		return safetensors.F32
	}
	defer f.Close()
	for _, k := range f.Names() {
		if info, _ := f.Info(k); isFloat(info.DType) && len(info.Shape) >= 2 {
			return info.DType
		}
	}
	return safetensors.F32
}
