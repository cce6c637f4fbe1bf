// Package device picks the compute backend of a tool from its --device and
// --mixed-precision flags, the same way in every tool.
package device

import (
	"loco/internal/cli"
	"loco/pkg/backend/cpu"
	"loco/pkg/backend/cuda"
	"loco/pkg/tensor"
)

// Engine returns an engine for device "auto" (a CUDA GPU when one is found,
// else the CPU), "cuda" (a GPU or an error) or "cpu". On a GPU the
// activations (and the weights loaded for them) are F16 or BF16 when mixed
// is "fp16" or "bf16", F32 for "no"; the CPU computes in F32 whatever mixed
// says. what names the work in the note printed when a GPU is used
// ("training", "sampling" ...); note may be nil. Bad flag values are
// *cli.UsageError.
func Engine(dev, mixed, what string, note func(format string, args ...any)) (*tensor.Engine, error) {
	switch mixed {
	case "no", "fp16", "bf16":
	default:
		return nil, cli.Usagef("--mixed-precision %q: want no, fp16 or bf16", mixed)
	}
	switch dev {
	case "cpu":
		return tensor.NewEngine(cpu.New()), nil
	case "cuda", "auto":
	default:
		return nil, cli.Usagef("--device %q: want auto, cuda or cpu", dev)
	}
	be, err := cuda.New(0)
	if err != nil {
		if dev == "cuda" {
			return nil, err
		}
		return tensor.NewEngine(cpu.New()), nil // auto: no GPU here
	}
	e := tensor.NewEngine(be)
	switch mixed {
	case "fp16":
		e.Act = tensor.F16
	case "bf16":
		e.Act = tensor.BF16
	}
	if note != nil {
		note("%s on %s, activations %v", what, be.Describe(), e.Act)
	}
	return e, nil
}
