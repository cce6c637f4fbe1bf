package cpu

import "testing"

func BenchmarkExpf(b *testing.B) {
	x := randn(newRand(1), 4096)
	for i := range x {
		x[i] *= 10
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += expf(v)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/exp")
	_ = s
}
