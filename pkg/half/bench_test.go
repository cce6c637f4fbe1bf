package half

import (
	"math"
	"math/rand/v2"
	"testing"
)

const benchN = 1 << 20

func benchInputs() ([]uint16, []float32) {
	r := rand.New(rand.NewPCG(5, 6))
	hs := make([]uint16, benchN)
	fs := make([]float32, benchN)
	for i := range fs {
		fs[i] = float32(r.NormFloat64())
		hs[i] = F32ToF16(fs[i])
	}
	return hs, fs
}

func reportElems(b *testing.B) {
	b.ReportMetric(float64(b.N)*benchN/b.Elapsed().Seconds()/1e9, "Gelem/s")
}

func BenchmarkF16sToF32s(b *testing.B) {
	hs, fs := benchInputs()
	for b.Loop() {
		F16sToF32s(fs, hs)
	}
	reportElems(b)
}

func BenchmarkF32sToF16s(b *testing.B) {
	hs, fs := benchInputs()
	for b.Loop() {
		F32sToF16s(hs, fs)
	}
	reportElems(b)
}

func BenchmarkBF16sToF32s(b *testing.B) {
	hs, fs := benchInputs()
	for b.Loop() {
		BF16sToF32s(fs, hs)
	}
	reportElems(b)
}

func BenchmarkF32sToBF16s(b *testing.B) {
	hs, fs := benchInputs()
	for b.Loop() {
		F32sToBF16s(hs, fs)
	}
	reportElems(b)
}

// BenchmarkF16ToF32Scalar is the branchy scalar path, for comparison with
// the table used by F16sToF32s.
func BenchmarkF16ToF32Scalar(b *testing.B) {
	hs, fs := benchInputs()
	for b.Loop() {
		for i, h := range hs {
			fs[i] = F16ToF32(h)
		}
	}
	if math.IsNaN(float64(fs[0])) {
		b.Fatal("unexpected NaN")
	}
	reportElems(b)
}
