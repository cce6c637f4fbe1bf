//go:build amd64 && !noasm

#include "textflag.h"

// Kernels of the narrow-head attention (attn_small.go). All lengths over
// keys are multiples of 16; ld is the row stride of m in floats.

// func smallMVAVX512(s []float32, m *float32, ld int, a []float32, bias *float32) float32
//
// s[j] = bias[j] + Σ_d a[d]·m[d·ld+j] for j < len(s), d < len(a)
// (len(a) ≥ 1), and returns the largest s[j] (−Inf if none; NaNs are not
// propagated into it). 64 columns at a time in four independent
// accumulators, then 16.
TEXT ·smallMVAVX512(SB), NOSPLIT, $0-76
	MOVQ s_base+0(FP), DI
	MOVQ s_len+8(FP), CX
	MOVQ m+24(FP), SI
	MOVQ ld+32(FP), R8
	SHLQ $2, R8
	MOVQ a_base+40(FP), R9
	MOVQ a_len+48(FP), R10
	MOVQ bias+64(FP), BX
	MOVL $0xff800000, AX // -Inf
	VPBROADCASTD AX, Z8
	VMOVAPS Z8, Z9
	VMOVAPS Z8, Z10
	VMOVAPS Z8, Z11

mv64:
	CMPQ CX, $64
	JLT  mv16
	VMOVUPS (BX), Z0
	VMOVUPS 64(BX), Z1
	VMOVUPS 128(BX), Z2
	VMOVUPS 192(BX), Z3
	MOVQ SI, R11
	MOVQ R9, R12
	MOVQ R10, R13

mv64d:
	VBROADCASTSS (R12), Z4
	VFMADD231PS  (R11), Z4, Z0
	VFMADD231PS  64(R11), Z4, Z1
	VFMADD231PS  128(R11), Z4, Z2
	VFMADD231PS  192(R11), Z4, Z3
	ADDQ $4, R12
	ADDQ R8, R11
	DECQ R13
	JNZ  mv64d
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	VMAXPS  Z0, Z8, Z8
	VMAXPS  Z1, Z9, Z9
	VMAXPS  Z2, Z10, Z10
	VMAXPS  Z3, Z11, Z11
	ADDQ $256, DI
	ADDQ $256, SI
	ADDQ $256, BX
	SUBQ $64, CX
	JMP  mv64

mv16:
	CMPQ CX, $16
	JLT  mvdone
	VMOVUPS (BX), Z0
	MOVQ SI, R11
	MOVQ R9, R12
	MOVQ R10, R13

mv16d:
	VBROADCASTSS (R12), Z4
	VFMADD231PS  (R11), Z4, Z0
	ADDQ $4, R12
	ADDQ R8, R11
	DECQ R13
	JNZ  mv16d
	VMOVUPS Z0, (DI)
	VMAXPS  Z0, Z8, Z8
	ADDQ $64, DI
	ADDQ $64, SI
	ADDQ $64, BX
	SUBQ $16, CX
	JMP  mv16

mvdone:
	VMAXPS Z9, Z8, Z8
	VMAXPS Z11, Z10, Z10
	VMAXPS Z10, Z8, Z0
	VEXTRACTF32X8 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+72(FP)
	RET

// REDUCEADD adds the sum of the lanes of Z to the float at off(DI).
#define REDUCEADD(Z, Y, X, off) \
	VEXTRACTF32X8 $1, Z, Y5 \
	VADDPS Y5, Y, Y \
	VEXTRACTF128 $1, Y, X5 \
	VADDPS X5, X, X \
	VPERMILPS $0x4e, X, X5 \
	VADDPS X5, X, X \
	VPERMILPS $0xb1, X, X5 \
	VADDPS X5, X, X \
	VADDSS off(DI), X, X \
	VMOVSS X, off(DI)

// func smallMTVAVX512(out []float32, m *float32, ld int, p []float32)
//
// out[d] += Σ_j p[j]·m[d·ld+j] for d < len(out), j < len(p): four rows
// at a time sharing the loads of p, then one.
TEXT ·smallMTVAVX512(SB), NOSPLIT, $0-64
	MOVQ out_base+0(FP), DI
	MOVQ out_len+8(FP), R10
	MOVQ m+24(FP), SI
	MOVQ ld+32(FP), R8
	SHLQ $2, R8
	MOVQ p_base+40(FP), R9
	MOVQ p_len+48(FP), CX
	SHRQ $4, CX
	TESTQ CX, CX
	JZ    mtdone

mt4:
	CMPQ R10, $4
	JLT  mt1
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	LEAQ (SI)(R8*1), R11
	LEAQ (R11)(R8*1), R12
	LEAQ (R12)(R8*1), BX
	XORQ AX, AX
	MOVQ CX, R13

mt4j:
	VMOVUPS     (R9)(AX*1), Z4
	VFMADD231PS (SI)(AX*1), Z4, Z0
	VFMADD231PS (R11)(AX*1), Z4, Z1
	VFMADD231PS (R12)(AX*1), Z4, Z2
	VFMADD231PS (BX)(AX*1), Z4, Z3
	ADDQ $64, AX
	DECQ R13
	JNZ  mt4j
	REDUCEADD(Z0, Y0, X0, 0)
	REDUCEADD(Z1, Y1, X1, 4)
	REDUCEADD(Z2, Y2, X2, 8)
	REDUCEADD(Z3, Y3, X3, 12)
	ADDQ $16, DI
	LEAQ (BX)(R8*1), SI
	SUBQ $4, R10
	JMP  mt4

mt1:
	TESTQ R10, R10
	JZ    mtdone
	VXORPS Z0, Z0, Z0
	XORQ AX, AX
	MOVQ CX, R13

mt1j:
	VMOVUPS     (R9)(AX*1), Z4
	VFMADD231PS (SI)(AX*1), Z4, Z0
	ADDQ $64, AX
	DECQ R13
	JNZ  mt1j
	REDUCEADD(Z0, Y0, X0, 0)
	ADDQ $4, DI
	ADDQ R8, SI
	DECQ R10
	JMP  mt1

mtdone:
	VZEROUPPER
	RET

// func smallGERAVX512(m *float32, ld int, a []float32, p []float32)
//
// m[d·ld+j] += a[d]·p[j] for d < len(a), j < len(p).
TEXT ·smallGERAVX512(SB), NOSPLIT, $0-64
	MOVQ m+0(FP), DI
	MOVQ ld+8(FP), R8
	SHLQ $2, R8
	MOVQ a_base+16(FP), R9
	MOVQ a_len+24(FP), R10
	MOVQ p_base+40(FP), SI
	MOVQ p_len+48(FP), CX
	SHRQ $4, CX
	TESTQ CX, CX
	JZ    gdone
	TESTQ R10, R10
	JZ    gdone

grow:
	VBROADCASTSS (R9), Z4
	XORQ AX, AX
	MOVQ CX, R13

gj:
	VMOVUPS     (DI)(AX*1), Z0
	VFMADD231PS (SI)(AX*1), Z4, Z0
	VMOVUPS     Z0, (DI)(AX*1)
	ADDQ $64, AX
	DECQ R13
	JNZ  gj
	ADDQ $4, R9
	ADDQ R8, DI
	DECQ R10
	JNZ  grow

gdone:
	VZEROUPPER
	RET

// func smallDSAVX512(p, dp []float32, delta, scale float32)
//
// p[j] = scale·p[j]·(dp[j] − delta) for j < len(p).
TEXT ·smallDSAVX512(SB), NOSPLIT, $0-56
	MOVQ p_base+0(FP), DI
	MOVQ p_len+8(FP), CX
	MOVQ dp_base+24(FP), SI
	SHRQ $4, CX
	VBROADCASTSS delta+48(FP), Z5
	VBROADCASTSS scale+52(FP), Z6
	TESTQ CX, CX
	JZ    dsdone

dsloop:
	VMOVUPS (SI), Z0
	VSUBPS  Z5, Z0, Z0
	VMULPS  (DI), Z0, Z0
	VMULPS  Z6, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  dsloop

dsdone:
	VZEROUPPER
	RET
