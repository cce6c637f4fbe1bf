package cpu_test

import (
	"testing"

	"loco/pkg/backend/backendtest"
	"loco/pkg/backend/cpu"
	"loco/pkg/tensor"
)

// TestConformance runs the shared backend conformance suite on the CPU
// backend (F32 storage, the only dtype it stores).
func TestConformance(t *testing.T) {
	backendtest.Run(t, cpu.New(), backendtest.Options{DType: tensor.F32})
}

// BenchmarkConformance runs the suite's per-op benchmarks at SD 1.5 sizes.
func BenchmarkConformance(b *testing.B) {
	backendtest.Benchmark(b, cpu.New(), backendtest.Options{DType: tensor.F32})
}
