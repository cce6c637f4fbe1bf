package merge

import (
	"fmt"
	"strings"

	"loco/pkg/lycoris"
	"loco/pkg/safetensors"
	"loco/pkg/sd"
)

// ApplyOptions describe one merge of networks into a checkpoint.
type ApplyOptions struct {
	Base     string  // single-file SD 1.x .safetensors checkpoint
	Networks []Input // applied in order; deltas to one layer add up
	Output   string
	// Precision is the dtype of the output's floating-point tensors (F32,
	// F16, BF16); empty keeps each tensor's own dtype.
	Precision safetensors.DType
	// Progress, when set, is called after each tensor written.
	Progress func(done, total int)
}

// ApplyReport says what Apply did.
type ApplyReport struct {
	Tensors  int            // tensors written
	Changed  int            // layer weights changed
	Modules  map[string]int // network path → modules applied
	Metadata map[string]string
}

// Apply merges the networks into the base checkpoint and writes the result
// (merge.md A): W' = W + ratio·(α/r)·ΔW for every module, ΔW accumulated in
// float64 and added in float32, the sum rounded to the output dtype. Every
// other tensor is copied unchanged (bytes as stored, unless Precision asks
// for another float dtype). The output is streamed tensor by tensor
// through a temporary file renamed into place at the end, so memory holds
// the networks and one tensor, never the model.
func Apply(opt ApplyOptions) (*ApplyReport, error) {
	if len(opt.Networks) == 0 {
		return nil, fmt.Errorf("apply: no network given")
	}
	inputs := []string{opt.Base}
	for _, n := range opt.Networks {
		inputs = append(inputs, n.Path)
	}
	if err := checkOutput(opt.Output, inputs...); err != nil {
		return nil, err
	}
	switch opt.Precision {
	case "", safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return nil, fmt.Errorf("apply: output precision %s is not one of F32, F16, BF16", opt.Precision)
	}
	ck, err := sd.OpenCheckpoint(opt.Base)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	f := ck.F
	tab, err := CheckpointTable(f)
	if err != nil {
		return nil, err
	}
	// Per checkpoint key, the deltas to add in order.
	type term struct {
		fa   *Factors
		coef float64
	}
	terms := map[string][]term{}
	rep := &ApplyReport{Modules: map[string]int{}}
	var titles []string
	titles = append(titles, title(f.Metadata(), opt.Base))
	for _, in := range opt.Networks {
		net, err := lycoris.ReadFile(in.Path)
		if err != nil {
			return nil, err
		}
		ms, err := Match(net, tab)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			coef := in.Ratio(m.Module.Name) * Scale(m.Module)
			terms[m.Layer.Key] = append(terms[m.Layer.Key], term{m.Factors, coef})
		}
		rep.Modules[in.Path] = len(ms)
		titles = append(titles, title(net.Metadata, in.Path))
	}

	names := f.Names()
	specs := make([]safetensors.Spec, len(names))
	for i, k := range names {
		info, _ := f.Info(k)
		dt := info.DType
		if opt.Precision != "" && isFloat(dt) {
			dt = opt.Precision
		}
		specs[i] = safetensors.Spec{Name: k, DType: dt, Shape: info.Shape}
	}
	md := f.Metadata()
	md["modelspec.sai_model_spec"] = "1.0.0"
	md["modelspec.architecture"] = "stable-diffusion-v1"
	md["modelspec.implementation"] = "https://github.com/Stability-AI/generative-models"
	md["modelspec.title"] = stem(opt.Output)
	md["modelspec.merged_from"] = strings.Join(titles, ", ")
	rep.Metadata = md

	w, err := safetensors.Create(opt.Output, specs, md)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	for i, k := range names {
		info, _ := f.Info(k)
		ts := terms[k]
		switch {
		case len(ts) > 0:
			v, err := f.ReadFloat32(k)
			if err != nil {
				return nil, err
			}
			for _, t := range ts {
				t.fa.AddDelta(v, t.coef)
			}
			if err := w.WriteFloat32(k, v); err != nil {
				return nil, err
			}
			rep.Changed++
		case specs[i].DType != info.DType:
			v, err := f.ReadFloat32(k)
			if err != nil {
				return nil, err
			}
			if err := w.WriteFloat32(k, v); err != nil {
				return nil, err
			}
		default:
			raw, err := f.ReadRaw(k)
			if err != nil {
				return nil, err
			}
			if err := w.Write(k, raw); err != nil {
				return nil, err
			}
		}
		rep.Tensors++
		if opt.Progress != nil {
			opt.Progress(i+1, len(names))
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return rep, nil
}

func isFloat(dt safetensors.DType) bool {
	switch dt {
	case safetensors.F16, safetensors.BF16, safetensors.F32, safetensors.F64:
		return true
	}
	return false
}
