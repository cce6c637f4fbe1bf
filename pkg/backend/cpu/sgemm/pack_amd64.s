//go:build amd64 && !noasm

#include "textflag.h"

// func interleaveAVX512(dst *float32, dstStride int, src *float32, idx *[16]int32, mask int, kc int)
// For p in [0, kc) and each lane r set in mask:
//   dst[p*dstStride + r] = src[idx[r] + p]
// One masked VGATHERDPS reads a column of up to 16 rows, one masked store
// writes it as a row of the packed panel.
TEXT ·interleaveAVX512(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), DX
	SHLQ $2, DX
	MOVQ src+16(FP), SI
	MOVQ idx+24(FP), AX
	VMOVDQU32 (AX), Z1
	MOVQ mask+32(FP), BX
	KMOVW BX, K2
	MOVQ kc+40(FP), CX
	CMPQ CX, $2
	JL tail

loop2:
	KMOVW BX, K1
	KMOVW BX, K3
	VGATHERDPS (SI)(Z1*4), K1, Z0
	VGATHERDPS 4(SI)(Z1*4), K3, Z2
	VMOVUPS Z0, K2, (DI)
	ADDQ DX, DI
	VMOVUPS Z2, K2, (DI)
	ADDQ DX, DI
	ADDQ $8, SI
	SUBQ $2, CX
	CMPQ CX, $2
	JGE loop2

tail:
	TESTQ CX, CX
	JEQ done
	KMOVW BX, K1
	VGATHERDPS (SI)(Z1*4), K1, Z0
	VMOVUPS Z0, K2, (DI)

done:
	VZEROUPPER
	RET
