//go:build !purego

#include "textflag.h"

// func maskBlocksSSE2(dst, src *byte, n int, key2 uint64)
// XORs n bytes (a multiple of 16) of src with key2 repeated into dst. dst
// may be src: each block is loaded before it is stored.
TEXT ·maskBlocksSSE2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ key2+24(FP), X0
	PUNPCKLQDQ X0, X0

loop64:
	CMPQ CX, $64
	JB   loop16
	MOVOU 0(SI), X1
	MOVOU 16(SI), X2
	MOVOU 32(SI), X3
	MOVOU 48(SI), X4
	PXOR  X0, X1
	PXOR  X0, X2
	PXOR  X0, X3
	PXOR  X0, X4
	MOVOU X1, 0(DI)
	MOVOU X2, 16(DI)
	MOVOU X3, 32(DI)
	MOVOU X4, 48(DI)
	ADDQ  $64, SI
	ADDQ  $64, DI
	SUBQ  $64, CX
	JMP   loop64

loop16:
	CMPQ  CX, $16
	JB    done
	MOVOU (SI), X1
	PXOR  X0, X1
	MOVOU X1, (DI)
	ADDQ  $16, SI
	ADDQ  $16, DI
	SUBQ  $16, CX
	JMP   loop16

done:
	RET
