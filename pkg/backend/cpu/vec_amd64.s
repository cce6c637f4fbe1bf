//go:build amd64 && !noasm

#include "textflag.h"

// func expShiftAVX512(x []float32, shift float32) float32
//
// For n = len(x) rounded down to a multiple of 16: x[i] = exp(x[i] - shift);
// returns the sum of the results. exp as in expf: k = round(x·log2e),
// r = x − k·ln2 (two-part ln2), e^r by a degree-6 polynomial, times 2^k by
// VSCALEFPS (which underflows gracefully to 0). Inputs are clamped to
// [−104, 88.72] first, so −Inf gives 0.
TEXT ·expShiftAVX512(SB), NOSPLIT, $0-36
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	SHRQ $4, CX
	VBROADCASTSS shift+24(FP), Z15

	MOVL $0x3fb8aa3b, AX // log2e
	VPBROADCASTD AX, Z14
	MOVL $0x3f318000, AX // ln2hi 0.693359375
	VPBROADCASTD AX, Z13
	MOVL $0xb95e8083, AX // ln2lo -2.12194440e-4
	VPBROADCASTD AX, Z12
	MOVL $0xc2d00000, AX // -104
	VPBROADCASTD AX, Z11
	MOVL $0x42b17217, AX // 88.72283
	VPBROADCASTD AX, Z10
	MOVL $0x3ab60b61, AX // 1/720
	VPBROADCASTD AX, Z9
	MOVL $0x3c088889, AX // 1/120
	VPBROADCASTD AX, Z8
	MOVL $0x3d2aaaab, AX // 1/24
	VPBROADCASTD AX, Z7
	MOVL $0x3e2aaaab, AX // 1/6
	VPBROADCASTD AX, Z6
	MOVL $0x3f000000, AX // 1/2
	VPBROADCASTD AX, Z5
	MOVL $0x3f800000, AX // 1
	VPBROADCASTD AX, Z4
	VXORPS Z3, Z3, Z3    // lane sums

	TESTQ CX, CX
	JZ done

loop:
	VMOVUPS (SI), Z0
	VSUBPS Z15, Z0, Z0
	VMAXPS Z11, Z0, Z0
	VMINPS Z10, Z0, Z0
	VMULPS Z14, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1     // k = round to nearest
	VFNMADD231PS Z13, Z1, Z0   // r = x - k*ln2hi
	VFNMADD231PS Z12, Z1, Z0   // r -= k*ln2lo
	VMOVAPS Z9, Z2
	VFMADD213PS Z8, Z0, Z2     // p = p*r + 1/120
	VFMADD213PS Z7, Z0, Z2
	VFMADD213PS Z6, Z0, Z2
	VFMADD213PS Z5, Z0, Z2
	VFMADD213PS Z4, Z0, Z2
	VFMADD213PS Z4, Z0, Z2     // p = p*r + 1
	VSCALEFPS Z1, Z2, Z2       // p * 2^k
	VMOVUPS Z2, (SI)
	VADDPS Z2, Z3, Z3
	ADDQ $64, SI
	DECQ CX
	JNZ loop

done:
	VEXTRACTF32X8 $1, Z3, Y0
	VADDPS Y0, Y3, Y3
	VEXTRACTF128 $1, Y3, X0
	VADDPS X0, X3, X3
	VPERMILPS $0x4e, X3, X0
	VADDPS X0, X3, X3
	VPERMILPS $0xb1, X3, X0
	VADDPS X0, X3, X3
	VZEROUPPER
	MOVSS X3, ret+32(FP)
	RET

// func sigmoidAVX512(dst, x []float32, a float32)
//
// For n = len(x) rounded down to a multiple of 16:
// dst[i] = 1/(1 + exp(−a·x[i])), exp as in expShiftAVX512.
TEXT ·sigmoidAVX512(SB), NOSPLIT, $0-52
	MOVQ dst_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), CX
	SHRQ $4, CX
	VBROADCASTSS a+48(FP), Z15

	MOVL $0x3fb8aa3b, AX // log2e
	VPBROADCASTD AX, Z14
	MOVL $0x3f318000, AX // ln2hi
	VPBROADCASTD AX, Z13
	MOVL $0xb95e8083, AX // ln2lo
	VPBROADCASTD AX, Z12
	MOVL $0xc2d00000, AX // -104
	VPBROADCASTD AX, Z11
	MOVL $0x42b17217, AX // 88.72283
	VPBROADCASTD AX, Z10
	MOVL $0x3ab60b61, AX // 1/720
	VPBROADCASTD AX, Z9
	MOVL $0x3c088889, AX // 1/120
	VPBROADCASTD AX, Z8
	MOVL $0x3d2aaaab, AX // 1/24
	VPBROADCASTD AX, Z7
	MOVL $0x3e2aaaab, AX // 1/6
	VPBROADCASTD AX, Z6
	MOVL $0x3f000000, AX // 1/2
	VPBROADCASTD AX, Z5
	MOVL $0x3f800000, AX // 1
	VPBROADCASTD AX, Z4

	TESTQ CX, CX
	JZ sdone

sloop:
	VMOVUPS (SI), Z0
	VMULPS Z15, Z0, Z0
	VXORPS Z3, Z3, Z3
	VSUBPS Z0, Z3, Z0          // -a*x
	VMAXPS Z11, Z0, Z0
	VMINPS Z10, Z0, Z0
	VMULPS Z14, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1
	VFNMADD231PS Z13, Z1, Z0
	VFNMADD231PS Z12, Z1, Z0
	VMOVAPS Z9, Z2
	VFMADD213PS Z8, Z0, Z2
	VFMADD213PS Z7, Z0, Z2
	VFMADD213PS Z6, Z0, Z2
	VFMADD213PS Z5, Z0, Z2
	VFMADD213PS Z4, Z0, Z2
	VFMADD213PS Z4, Z0, Z2
	VSCALEFPS Z1, Z2, Z2       // e = exp(-a*x)
	VADDPS Z4, Z2, Z2          // 1 + e
	VDIVPS Z2, Z4, Z2          // 1 / (1 + e)
	VMOVUPS Z2, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ sloop

sdone:
	VZEROUPPER
	RET

// func maxAVX512(x []float32, m float32) float32
//
// max(m, x[0], ..., x[n-1]) for n = len(x), a multiple of 16 (NaN
// inputs are not propagated: VMAXPS returns its second operand).
TEXT ·maxAVX512(SB), NOSPLIT, $0-36
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	SHRQ $4, CX
	VBROADCASTSS m+24(FP), Z0
	VMOVAPS Z0, Z1
	TESTQ CX, CX
	JZ mreduce

mloop:
	VMAXPS (SI), Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ mloop

mreduce:
	VEXTRACTF32X8 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func normCDFAVX512(dst, x []float32)
//
// For n = len(x) rounded down to a multiple of 16: dst[i] = Φ(x[i]) =
// ½·erfc(−x/√2), with erfc(a) = t·exp(P(t) − a²), t = 1/(1 + a/2), the
// Chebyshev fit of normCDF32, and the exp of expShiftAVX512.
TEXT ·normCDFAVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ x_len+32(FP), CX
	SHRQ $4, CX

	MOVL $0x3fb8aa3b, AX // log2e
	VPBROADCASTD AX, Z14
	MOVL $0x3f318000, AX // ln2hi
	VPBROADCASTD AX, Z13
	MOVL $0xb95e8083, AX // ln2lo
	VPBROADCASTD AX, Z12
	MOVL $0xc2d00000, AX // -104
	VPBROADCASTD AX, Z11
	MOVL $0x3ab60b61, AX // 1/720
	VPBROADCASTD AX, Z9
	MOVL $0x3c088889, AX // 1/120
	VPBROADCASTD AX, Z8
	MOVL $0x3d2aaaab, AX // 1/24
	VPBROADCASTD AX, Z7
	MOVL $0x3e2aaaab, AX // 1/6
	VPBROADCASTD AX, Z6
	MOVL $0x3f000000, AX // 1/2
	VPBROADCASTD AX, Z5
	MOVL $0x3f800000, AX // 1
	VPBROADCASTD AX, Z4
	MOVL $0x3e2ef945, AX // erfc fit, highest power first
	VPBROADCASTD AX, Z16
	MOVL $0xbf527892, AX
	VPBROADCASTD AX, Z17
	MOVL $0x3fbe87b0, AX
	VPBROADCASTD AX, Z18
	MOVL $0xbf914e5d, AX
	VPBROADCASTD AX, Z19
	MOVL $0x3e8ec7cc, AX
	VPBROADCASTD AX, Z20
	MOVL $0xbe3ec24c, AX
	VPBROADCASTD AX, Z21
	MOVL $0x3dc636c9, AX
	VPBROADCASTD AX, Z22
	MOVL $0x3ebf88fb, AX
	VPBROADCASTD AX, Z23
	MOVL $0x3f8000c7, AX
	VPBROADCASTD AX, Z24
	MOVL $0xbfa1fc4e, AX
	VPBROADCASTD AX, Z25
	MOVL $0x3f3504f3, AX // 1/√2
	VPBROADCASTD AX, Z26
	MOVL $0x7fffffff, AX // |·| mask
	VPBROADCASTD AX, Z27
	VXORPS Z28, Z28, Z28

	TESTQ CX, CX
	JZ ndone

nloop:
	VMOVUPS (SI), Z0
	VMULPS Z26, Z0, Z0         // z = x/√2
	VPANDD Z27, Z0, Z1         // a = |z|
	VMULPS Z5, Z1, Z2
	VADDPS Z4, Z2, Z2
	VDIVPS Z2, Z4, Z2          // t = 1/(1 + a/2)
	VMOVAPS Z16, Z3
	VFMADD213PS Z17, Z2, Z3
	VFMADD213PS Z18, Z2, Z3
	VFMADD213PS Z19, Z2, Z3
	VFMADD213PS Z20, Z2, Z3
	VFMADD213PS Z21, Z2, Z3
	VFMADD213PS Z22, Z2, Z3
	VFMADD213PS Z23, Z2, Z3
	VFMADD213PS Z24, Z2, Z3
	VFMADD213PS Z25, Z2, Z3    // P(t)
	VFNMADD231PS Z1, Z1, Z3    // P(t) − a²
	VMAXPS Z11, Z3, Z3
	VMULPS Z14, Z3, Z29
	VRNDSCALEPS $0, Z29, Z29
	VFNMADD231PS Z13, Z29, Z3
	VFNMADD231PS Z12, Z29, Z3
	VMOVAPS Z9, Z30
	VFMADD213PS Z8, Z3, Z30
	VFMADD213PS Z7, Z3, Z30
	VFMADD213PS Z6, Z3, Z30
	VFMADD213PS Z5, Z3, Z30
	VFMADD213PS Z4, Z3, Z30
	VFMADD213PS Z4, Z3, Z30
	VSCALEFPS Z29, Z30, Z30    // exp(P(t) − a²)
	VMULPS Z2, Z30, Z30        // erfc(a)
	VMULPS Z5, Z30, Z30        // h = ½·erfc(a)
	VSUBPS Z30, Z4, Z31        // 1 − h
	VCMPPS $0x0d, Z28, Z0, K1  // z ≥ 0
	VBLENDMPS Z31, Z30, K1, Z30
	VMOVUPS Z30, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ nloop

ndone:
	VZEROUPPER
	RET

// func axpyAVX512(y, x []float32, a float32)
//
// y[i] += a·x[i] for n = len(y) rounded down to a multiple of 16.
TEXT ·axpyAVX512(SB), NOSPLIT, $0-52
	MOVQ y_base+0(FP), DI
	MOVQ y_len+8(FP), CX
	MOVQ x_base+24(FP), SI
	SHRQ $4, CX
	VBROADCASTSS a+48(FP), Z15
	TESTQ CX, CX
	JZ adone

aloop:
	VMOVUPS (DI), Z0
	VFMADD231PS (SI), Z15, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ aloop

adone:
	VZEROUPPER
	RET

// func scaleAVX512(y, x []float32, a float32)
// y[i] = a·x[i] for len(y) a multiple of 16 (len(x) ≥ len(y)).
TEXT ·scaleAVX512(SB), NOSPLIT, $0-52
	MOVQ y_base+0(FP), DI
	MOVQ y_len+8(FP), CX
	MOVQ x_base+24(FP), SI
	SHRQ $4, CX
	VBROADCASTSS a+48(FP), Z15
	TESTQ CX, CX
	JZ sdone

sloop:
	VMULPS (SI), Z15, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ sloop

sdone:
	VZEROUPPER
	RET

// func addAVX512(y, a, b []float32)
// y[i] = a[i] + b[i] for len(y) a multiple of 16 (a, b at least as long).
TEXT ·addAVX512(SB), NOSPLIT, $0-72
	MOVQ y_base+0(FP), DI
	MOVQ y_len+8(FP), CX
	MOVQ a_base+24(FP), SI
	MOVQ b_base+48(FP), DX
	SHRQ $4, CX
	TESTQ CX, CX
	JZ vadone

vaddloop:
	VMOVUPS (SI), Z0
	VADDPS (DX), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ vaddloop

vadone:
	VZEROUPPER
	RET

// func mulAVX512(y, a, b []float32)
// y[i] = a[i] · b[i] for len(y) a multiple of 16 (a, b at least as long).
TEXT ·mulAVX512(SB), NOSPLIT, $0-72
	MOVQ y_base+0(FP), DI
	MOVQ y_len+8(FP), CX
	MOVQ a_base+24(FP), SI
	MOVQ b_base+48(FP), DX
	SHRQ $4, CX
	TESTQ CX, CX
	JZ vmdone

vmulloop:
	VMOVUPS (SI), Z0
	VMULPS (DX), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ vmulloop

vmdone:
	VZEROUPPER
	RET
