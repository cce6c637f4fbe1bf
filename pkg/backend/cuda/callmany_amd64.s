#include "textflag.h"

// loco_cuda_callmany calls a C function with up to 24 integer/pointer
// arguments (System V AMD64 ABI: six in registers, the rest on the stack).
// It is itself called with the C convention by purego.SyscallN, with one
// argument: a pointer to a manyCall (fn, ret, args[24]).
GLOBL ·callManyABI0(SB), NOPTR|RODATA, $8
DATA ·callManyABI0(SB)/8, $loco_cuda_callmany(SB)

TEXT loco_cuda_callmany(SB), NOSPLIT|NOFRAME, $0
	PUSHQ BP
	MOVQ  SP, BP
	PUSHQ BX
	PUSHQ R12
	// SP is now 16-byte aligned (entry SP was 8 mod 16).
	MOVQ  DI, BX
	SUBQ  $144, SP // 18 stack argument slots
	MOVQ  64(BX), AX
	MOVQ  AX, 0(SP)
	MOVQ  72(BX), AX
	MOVQ  AX, 8(SP)
	MOVQ  80(BX), AX
	MOVQ  AX, 16(SP)
	MOVQ  88(BX), AX
	MOVQ  AX, 24(SP)
	MOVQ  96(BX), AX
	MOVQ  AX, 32(SP)
	MOVQ  104(BX), AX
	MOVQ  AX, 40(SP)
	MOVQ  112(BX), AX
	MOVQ  AX, 48(SP)
	MOVQ  120(BX), AX
	MOVQ  AX, 56(SP)
	MOVQ  128(BX), AX
	MOVQ  AX, 64(SP)
	MOVQ  136(BX), AX
	MOVQ  AX, 72(SP)
	MOVQ  144(BX), AX
	MOVQ  AX, 80(SP)
	MOVQ  152(BX), AX
	MOVQ  AX, 88(SP)
	MOVQ  160(BX), AX
	MOVQ  AX, 96(SP)
	MOVQ  168(BX), AX
	MOVQ  AX, 104(SP)
	MOVQ  176(BX), AX
	MOVQ  AX, 112(SP)
	MOVQ  184(BX), AX
	MOVQ  AX, 120(SP)
	MOVQ  192(BX), AX
	MOVQ  AX, 128(SP)
	MOVQ  200(BX), AX
	MOVQ  AX, 136(SP)
	MOVQ  16(BX), DI
	MOVQ  24(BX), SI
	MOVQ  32(BX), DX
	MOVQ  40(BX), CX
	MOVQ  48(BX), R8
	MOVQ  56(BX), R9
	MOVQ  0(BX), R10
	XORL  AX, AX // no vector registers used (for variadic callees)
	CALL  R10
	MOVQ  AX, 8(BX)
	ADDQ  $144, SP
	POPQ  R12
	POPQ  BX
	POPQ  BP
	RET
