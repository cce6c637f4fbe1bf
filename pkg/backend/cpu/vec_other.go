//go:build !amd64 || noasm

package cpu

// expShift sets x[i] = exp(x[i] − shift) and returns Σ x[i].
func expShift(x []float32, shift float32) float32 { return expShiftGo(x, shift) }

func useVectorExp() bool { return false }

// sigmoidScaled sets dst[i] = 1/(1+exp(−a·x[i])) (len(dst) ≥ len(x)).
func sigmoidScaled(dst, x []float32, a float32) { sigmoidScaledGo(dst[:len(x)], x, a) }

// rowMax returns the largest of m and the elements of x.
func rowMax(x []float32, m float32) float32 { return rowMaxGo(x, m) }

// normCDFVec sets dst[i] = Φ(x[i]) (len(dst) ≥ len(x)).
func normCDFVec(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = normCDF32(v)
	}
}

// scale32 sets y[i] = a·x[i] (len(x) ≥ len(y)).
func scale32(y, x []float32, a float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] = a * v
	}
}

// addMul32 reports that there is no vector add/multiply (the generic loop runs).
func addMul32(y, a, b []float32, mul bool) bool { return false }

// axpy32 sets y[i] += a·x[i] (len(x) ≥ len(y)).
func axpy32(y, x []float32, a float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}

func smallMV(s, m []float32, ld int, a, bias []float32) float32 {
	return smallMVGo(s, m, ld, a, bias)
}
func smallMTV(out, m []float32, ld int, p []float32) { smallMTVGo(out, m, ld, p) }
func smallGER(m []float32, ld int, a, p []float32)   { smallGERGo(m, ld, a, p) }
func smallDS(p, dp []float32, delta, scale float32)  { smallDSGo(p, dp, delta, scale) }
