//go:build amd64 && !noasm

#include "textflag.h"

// func dot4AVX512(k int, a *float32, lda int, b *float32, out *[4]float32)
// out[r] = Σ_{p<k} a[r*lda+p]·b[p] for r = 0..3. Sixteen p per step, one
// zmm accumulator per row; the k mod 16 tail is read with a zeroing mask
// (nothing past a row or b is touched); the four sums are reduced
// together with VHADDPS.
TEXT ·dot4AVX512(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	MOVQ b+24(FP), BX
	MOVQ out+32(FP), DI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPQ CX, $16
	JL tail

loop:
	VMOVUPS (BX), Z4
	VFMADD231PS (AX), Z4, Z0
	VFMADD231PS (AX)(R8*1), Z4, Z1
	VFMADD231PS (AX)(R8*2), Z4, Z2
	VFMADD231PS (AX)(R9*1), Z4, Z3
	ADDQ $64, AX
	ADDQ $64, BX
	SUBQ $16, CX
	CMPQ CX, $16
	JGE loop

tail:
	TESTQ CX, CX
	JEQ reduce
	MOVQ $1, DX
	SHLQ CX, DX
	DECQ DX
	KMOVW DX, K1
	VMOVUPS.Z (BX), K1, Z4
	VMOVUPS.Z (AX), K1, Z5
	VFMADD231PS Z5, Z4, Z0
	VMOVUPS.Z (AX)(R8*1), K1, Z5
	VFMADD231PS Z5, Z4, Z1
	VMOVUPS.Z (AX)(R8*2), K1, Z5
	VFMADD231PS Z5, Z4, Z2
	VMOVUPS.Z (AX)(R9*1), K1, Z5
	VFMADD231PS Z5, Z4, Z3

reduce:
	VEXTRACTF64X4 $1, Z0, Y5
	VADDPS Y5, Y0, Y0
	VEXTRACTF64X4 $1, Z1, Y5
	VADDPS Y5, Y1, Y1
	VEXTRACTF64X4 $1, Z2, Y5
	VADDPS Y5, Y2, Y2
	VEXTRACTF64X4 $1, Z3, Y5
	VADDPS Y5, Y3, Y3
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DI)
	VZEROUPPER
	RET
