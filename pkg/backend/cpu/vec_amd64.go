//go:build amd64 && !noasm

package cpu

import (
	"math"
	"os"

	"golang.org/x/sys/cpu"
)

//go:noescape
func normCDFAVX512(dst, x []float32)

//go:noescape
func axpyAVX512(y, x []float32, a float32)

//go:noescape
func maxAVX512(x []float32, m float32) float32

//go:noescape
func sigmoidAVX512(dst, x []float32, a float32)

//go:noescape
func expShiftAVX512(x []float32, shift float32) float32

// useAVX512 selects the vector exp; LOCO_NOASM=1 forces the Go loop (as
// it does for the SGEMM kernels).
var useAVX512 = cpu.X86.HasAVX512F && os.Getenv("LOCO_NOASM") != "1"

// expShift sets x[i] = exp(x[i] − shift) and returns Σ x[i].
//
// The len(x) mod 16 tail goes through the vector kernel too, padded with
// −Inf (whose exp is 0) in a 16-float buffer: attention rows of 77 keys
// would otherwise spend as long in the scalar tail as in the kernel.
func expShift(x []float32, shift float32) float32 {
	if !useAVX512 {
		return expShiftGo(x, shift)
	}
	var s float32
	n := len(x) &^ 15
	if n > 0 {
		s = expShiftAVX512(x[:n], shift)
	}
	if t := len(x) - n; t > 0 {
		var pad [16]float32
		negInf := float32(math.Inf(-1))
		for i := range pad {
			pad[i] = negInf
		}
		copy(pad[:], x[n:])
		s += expShiftAVX512(pad[:], shift)
		copy(x[n:], pad[:t])
	}
	return s
}

func useVectorExp() bool { return useAVX512 }

// sigmoidScaled sets dst[i] = 1/(1+exp(−a·x[i])) (len(dst) ≥ len(x)).
func sigmoidScaled(dst, x []float32, a float32) {
	dst = dst[:len(x)]
	n := 0
	if useAVX512 {
		n = len(x) &^ 15
		if n > 0 {
			sigmoidAVX512(dst[:n], x[:n], a)
		}
	}
	sigmoidScaledGo(dst[n:], x[n:], a)
}

// rowMax returns the largest of m and the elements of x.
func rowMax(x []float32, m float32) float32 {
	n := 0
	if useAVX512 {
		n = len(x) &^ 15
		if n > 0 {
			m = maxAVX512(x[:n], m)
		}
	}
	return rowMaxGo(x[n:], m)
}

// normCDFVec sets dst[i] = Φ(x[i]) (len(dst) ≥ len(x)).
func normCDFVec(dst, x []float32) {
	dst = dst[:len(x)]
	n := 0
	if useAVX512 {
		n = len(x) &^ 15
		if n > 0 {
			normCDFAVX512(dst[:n], x[:n])
		}
	}
	for i, v := range x[n:] {
		dst[n+i] = normCDF32(v)
	}
}

//go:noescape
func scaleAVX512(y, x []float32, a float32)

// scale32 sets y[i] = a·x[i] (len(x) ≥ len(y)).
func scale32(y, x []float32, a float32) {
	x = x[:len(y)]
	n := 0
	if useAVX512 {
		n = len(y) &^ 15
		if n > 0 {
			scaleAVX512(y[:n], x[:n], a)
		}
	}
	for i, v := range x[n:] {
		y[n+i] = a * v
	}
}

//go:noescape
func addAVX512(y, a, b []float32)

//go:noescape
func mulAVX512(y, a, b []float32)

// addMul32 sets y[i] = a[i] + b[i], or a[i]·b[i] when mul (a and b at
// least as long as y); it returns false when there is no vector unit.
func addMul32(y, a, b []float32, mul bool) bool {
	if !useAVX512 {
		return false
	}
	a, b = a[:len(y)], b[:len(y)]
	if n := len(y) &^ 15; n > 0 {
		if mul {
			mulAVX512(y[:n], a[:n], b[:n])
		} else {
			addAVX512(y[:n], a[:n], b[:n])
		}
	}
	for i := len(y) &^ 15; i < len(y); i++ {
		if mul {
			y[i] = a[i] * b[i]
		} else {
			y[i] = a[i] + b[i]
		}
	}
	return true
}

// axpy32 sets y[i] += a·x[i] (len(x) ≥ len(y)).
func axpy32(y, x []float32, a float32) {
	x = x[:len(y)]
	n := 0
	if useAVX512 {
		n = len(y) &^ 15
		if n > 0 {
			axpyAVX512(y[:n], x[:n], a)
		}
	}
	for i, v := range x[n:] {
		y[n+i] += a * v
	}
}

//go:noescape
func smallMVAVX512(s []float32, m *float32, ld int, a []float32, bias *float32) float32

//go:noescape
func smallMTVAVX512(out []float32, m *float32, ld int, p []float32)

//go:noescape
func smallGERAVX512(m *float32, ld int, a, p []float32)

//go:noescape
func smallDSAVX512(p, dp []float32, delta, scale float32)

// smallMV sets s[j] = bias[j] + Σ_d a[d]·m[d·ld+j] (len(s) a multiple
// of 16) and returns max(s).
func smallMV(s, m []float32, ld int, a, bias []float32) float32 {
	if !useAVX512 {
		return smallMVGo(s, m, ld, a, bias)
	}
	_ = m[(len(a)-1)*ld+len(s)-1]
	_ = bias[len(s)-1]
	return smallMVAVX512(s, &m[0], ld, a, &bias[0])
}

// smallMTV adds Σ_j p[j]·m[d·ld+j] to out[d] (len(p) a multiple of 16).
func smallMTV(out, m []float32, ld int, p []float32) {
	if !useAVX512 {
		smallMTVGo(out, m, ld, p)
		return
	}
	_ = m[(len(out)-1)*ld+len(p)-1]
	smallMTVAVX512(out, &m[0], ld, p)
}

// smallGER adds a[d]·p[j] to m[d·ld+j] (len(p) a multiple of 16).
func smallGER(m []float32, ld int, a, p []float32) {
	if !useAVX512 {
		smallGERGo(m, ld, a, p)
		return
	}
	_ = m[(len(a)-1)*ld+len(p)-1]
	smallGERAVX512(&m[0], ld, a, p)
}

// smallDS sets p[j] = scale·p[j]·(dp[j] − delta) (len(p) a multiple of 16).
func smallDS(p, dp []float32, delta, scale float32) {
	if !useAVX512 {
		smallDSGo(p, dp, delta, scale)
		return
	}
	smallDSAVX512(p, dp[:len(p)], delta, scale)
}
