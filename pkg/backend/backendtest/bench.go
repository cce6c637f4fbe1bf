package backendtest

import (
	"testing"

	"loco/pkg/tensor"
)

// Benchmark runs every op at SD 1.5 sizes (placeholder until the full set lands).
func Benchmark(b *testing.B, be tensor.Backend, o Options) {
	b.Skip("backendtest: benchmarks not written yet")
}
