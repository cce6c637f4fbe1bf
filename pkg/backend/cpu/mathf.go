package cpu

import (
	"math"
	"unsafe"
)

// Scalar functions of the elementwise ops. The float32 instances use a
// polynomial exp (relative error below 2e-7, like one float32 rounding);
// the float64 instances, used by the gradient checks, call package math.

// exp returns e^x.
func exp[T float](x T) T {
	switch v := any(x).(type) {
	case float32:
		return T(expf(v))
	}
	return T(math.Exp(float64(x)))
}

// sigmoid returns 1/(1+e^-x).
func sigmoid[T float](x T) T { return 1 / (1 + exp(-x)) }

const (
	invSqrt2   = 0.70710678118654752440
	invSqrt2Pi = 0.39894228040143267794
)

// normCDF is Φ(x) = ½·erfc(−x/√2): math.Erfc for float64, and for float32
// the Chebyshev-fitted erfc of Numerical Recipes (§6.2, relative error
// below 1.2e-7 for every argument, so the far negative tail of GELU keeps
// its relative accuracy) with the float32 exp.
func normCDF[T float](x T) T {
	if v, ok := any(x).(float32); ok {
		return T(normCDF32(v))
	}
	return T(0.5 * math.Erfc(-float64(x)*invSqrt2))
}

func normCDF32(x float32) float32 {
	z := float64(x) * invSqrt2
	a := math.Abs(z)
	t := 1 / (1 + 0.5*a)
	p := -1.26551223 + t*(1.00002368+t*(0.37409196+t*(0.09678418+t*(-0.18628806+
		t*(0.27886807+t*(-1.13520398+t*(1.48851587+t*(-0.82215223+t*0.17087277))))))))
	if z >= 0 {
		return 1 - 0.5*float32(t)*expf(float32(p-a*a))
	}
	if a > 3 {
		// Deep in the tail the float32 rounding of the exponent (≈ −a²)
		// would cost relative accuracy.
		return float32(0.5 * t * math.Exp(p-a*a))
	}
	return 0.5 * float32(t) * expf(float32(p-a*a)) // ½·erfc(|z|)
}

// expf is e^x in float32: x = k·ln2 + r with |r| ≤ ln2/2, e^r by a
// degree-6 polynomial, 2^k by building the exponent bits. Results below
// the smallest normal float32 flush to 0.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	switch {
	case x != x:
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -87.33654:
		return 0
	}
	kf := float32(math.Floor(float64(x*log2e) + 0.5))
	r := x - kf*ln2hi - kf*ln2lo
	p := float32(1.0 / 720)
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	k := int32(kf)
	if k > 127 { // x within rounding of the overflow bound
		return p * 2 * math.Float32frombits(uint32(k-1+127)<<23)
	}
	return p * math.Float32frombits(uint32(k+127)<<23)
}

// expShiftGo is the portable expShift.
func expShiftGo(x []float32, shift float32) float32 {
	var s float32
	for i, v := range x {
		e := expf(v - shift)
		x[i] = e
		s += e
	}
	return s
}

// sigmoidScaledGo is the portable sigmoidScaled.
func sigmoidScaledGo(dst, x []float32, a float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = 1 / (1 + expf(-a*v))
	}
}

// sigmoidRow sets dst[i] = 1/(1+exp(−a·x[i])): the vector kernel for
// float32, the scalar loop for float64.
func sigmoidRow[T float](dst, x []T, a T) {
	if d, ok := asF32(dst); ok {
		xs, _ := asF32(x)
		sigmoidScaled(d, xs, float32(a))
		return
	}
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = sigmoid(a * v)
	}
}

// chunk is the length of the stack buffers of the elementwise loops.
const chunk = 256

// rowMaxGo is the portable rowMax (NaNs are skipped, as by VMAXPS).
func rowMaxGo(x []float32, m float32) float32 {
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

// normCDFRow sets dst[i] = Φ(x[i]): the vector kernel for float32.
func normCDFRow[T float](dst, x []T) {
	if d, ok := asF32(dst); ok {
		xs, _ := asF32(x)
		normCDFVec(d, xs)
		return
	}
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = normCDF(v)
	}
}

// gaussRow sets dst[i] = φ(x[i]) = exp(−x²/2)/√(2π).
func gaussRow[T float](dst, x []T) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = -0.5 * v * v
	}
	if d, ok := asF32(dst); ok {
		expShift(d, 0)
	} else {
		for i, v := range dst {
			dst[i] = exp(v)
		}
	}
	for i := range dst {
		dst[i] *= invSqrt2Pi
	}
}

// expShiftRow sets x[i] = exp(x[i] − shift) and returns their sum: the
// vector kernel for float32.
func expShiftRow[T float](x []T, shift T) T {
	if v, ok := asF32(x); ok {
		return T(expShift(v, float32(shift)))
	}
	var s T
	for i, v := range x {
		e := exp(v - shift)
		x[i] = e
		s += e
	}
	return s
}

// asF32 views s as []float32 when T is float32, so that the generic loops
// can hand float32 rows to the vector kernels. (Converting the slice to an
// interface instead would move its backing array to the heap.)
func asF32[T float](s []T) ([]float32, bool) {
	var z T
	if _, ok := any(z).(float32); !ok {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(s))), len(s)), true
}
