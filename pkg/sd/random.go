package sd

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"

	"loco/pkg/tensor"
)

// RandomSource makes seeded random weights with the statistics of a
// trained-from-scratch initialisation, for benchmarks and end-to-end runs at
// the real sizes without a real checkpoint: weights of rank ≥ 2 are
// N(0, 1/fan_in); norm weights 1 + 0.1·N(0,1); biases and other vectors
// 0.1·N(0,1). Each tensor's values depend only on Seed and its key.
type RandomSource struct {
	E     *tensor.Engine
	DType tensor.DType
	Seed  uint64
}

// Load implements nn.Source.
func (s *RandomSource) Load(key string, shape tensor.Shape) (*tensor.Tensor, error) {
	v := RandomValues(s.Seed, key, shape)
	return s.E.Persistent(s.DType, v, shape...), nil
}

// RandomValues generates the values RandomSource gives key.
func RandomValues(seed uint64, key string, shape tensor.Shape) []float32 {
	h := fnv.New64a()
	h.Write([]byte(key))
	kseed := h.Sum64() ^ seed
	n := shape.Numel()
	v := make([]float32, n)
	mean, std := float32(0), float32(0.1)
	switch {
	case len(shape) >= 2:
		std = float32(1 / math.Sqrt(float64(n/shape[0])))
	case strings.HasSuffix(key, ".weight") && (strings.Contains(key, "norm") || strings.Contains(key, "in_layers.0") ||
		strings.Contains(key, "out_layers.0") || strings.HasSuffix(key, "out.0.weight")):
		mean = 1
	}
	const chunk = 1 << 16
	chunks := (n + chunk - 1) / chunk
	workers := min(runtime.GOMAXPROCS(0), chunks)
	var wg sync.WaitGroup
	next := make(chan int, chunks)
	for c := 0; c < chunks; c++ {
		next <- c
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				r := rand.New(rand.NewPCG(kseed, uint64(c)))
				for i := c * chunk; i < min(n, (c+1)*chunk); i++ {
					v[i] = mean + std*float32(r.NormFloat64())
				}
			}
		}()
	}
	wg.Wait()
	return v
}
