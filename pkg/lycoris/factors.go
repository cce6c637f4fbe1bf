package lycoris

import (
	"math"
	"math/rand/v2"

	"loco/pkg/tensor"
)

// Algo is a LyCORIS algorithm.
type Algo string

const (
	AlgoLoCon Algo = "locon" // "lora" selects the same module class
	AlgoLoHa  Algo = "loha"
)

// factor is one trainable tensor of a module: its file-key suffix, shape
// and initialisation.
type factor struct {
	suffix string
	shape  tensor.Shape
	fill   func(dst []float32, shape tensor.Shape, rng *rand.Rand)
}

// kaimingUniform is kaiming_uniform(a=√5): U(±1/√fan_in), fan_in the
// product of all dims but the first.
func kaimingUniform(dst []float32, shape tensor.Shape, rng *rand.Rand) {
	bound := 1 / math.Sqrt(float64(shape.Numel()/shape[0]))
	for i := range dst {
		dst[i] = float32((rng.Float64()*2 - 1) * bound)
	}
}

func zeros(dst []float32, _ tensor.Shape, _ *rand.Rand) { clear(dst) }

func normal(std float64) func([]float32, tensor.Shape, *rand.Rand) {
	return func(dst []float32, _ tensor.Shape, rng *rand.Rand) {
		for i := range dst {
			dst[i] = float32(rng.NormFloat64() * std)
		}
	}
}

// factorsOf lists a module's factors (spec/locon.md §4, §5.5, §6.1).
func factorsOf(cfg Config, r, in, out, k int, conv bool) []factor {
	if cfg.Algo == AlgoLoHa {
		// Current LyCORIS init: w1_b, w2_b ~ N(0,1), w1_a ~ N(0,0.1), w2_a = 0.
		return []factor{
			{".hada_w1_a", tensor.Shape{out, r}, normal(0.1)},
			{".hada_w1_b", tensor.Shape{r, in * k * k}, normal(1)},
			{".hada_w2_a", tensor.Shape{out, r}, zeros},
			{".hada_w2_b", tensor.Shape{r, in * k * k}, normal(1)},
		}
	}
	switch {
	case !conv:
		return []factor{
			{".lora_down.weight", tensor.Shape{r, in}, kaimingUniform},
			{".lora_up.weight", tensor.Shape{out, r}, zeros},
		}
	case cfg.Tucker && k > 1:
		return []factor{
			{".lora_down.weight", tensor.Shape{r, in, 1, 1}, kaimingUniform},
			{".lora_up.weight", tensor.Shape{out, r, 1, 1}, zeros},
			{".lora_mid.weight", tensor.Shape{r, r, k, k}, kaimingUniform},
		}
	default:
		return []factor{
			{".lora_down.weight", tensor.Shape{r, in, k, k}, kaimingUniform},
			{".lora_up.weight", tensor.Shape{out, r, 1, 1}, zeros},
		}
	}
}

// field maps a factor suffix to the module's tensor field.
func (m *Module) field(suffix string) **tensor.Tensor {
	switch suffix {
	case ".lora_down.weight":
		return &m.Down
	case ".lora_up.weight":
		return &m.Up
	case ".lora_mid.weight":
		return &m.Mid
	case ".hada_w1_a":
		return &m.W1a
	case ".hada_w1_b":
		return &m.W1b
	case ".hada_w2_a":
		return &m.W2a
	case ".hada_w2_b":
		return &m.W2b
	}
	panic("lycoris: unknown factor " + suffix)
}

// DeltaLoHa is the LoHa weight delta scale·(W1a·W1b) ⊙ (W2a·W2b), shaped
// like the wrapped layer's weight.
func (m *Module) DeltaLoHa() *tensor.Tensor {
	// The scale rides on the first product's GEMM (the product is bilinear).
	d := tensor.Mul(tensor.MatMulScaled(m.weight(m.W1a), m.weight(m.W1b), false, false, m.Scale()),
		tensor.MatMul(m.weight(m.W2a), m.weight(m.W2b), false, false))
	if m.Conv {
		return tensor.Reshape(d, m.out, m.in, m.Kernel, m.Kernel)
	}
	return d
}

// weightDelta is the module's LoHa weight delta for the layer's
// WeightDelta hook (nil when module dropout skips the module). LoHa cannot
// be factored into a chain of small layers, so the layer runs with
// W + delta: one convolution or GEMM, as LyCORIS does outside bypass mode.
func (m *Module) weightDelta() *tensor.Tensor {
	if r := m.dropRNG(); r != nil && m.skipped(r) {
		return nil
	}
	return m.DeltaLoHa()
}
