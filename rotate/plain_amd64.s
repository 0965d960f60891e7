//go:build !purego

#include "textflag.h"

// BROADCAST fills the 16 bytes of x with the byte b.
#define BROADCAST(b, x) \
	MOVQ	$(0x0101010101010101*b), AX; \
	MOVQ	AX, x; \
	PUNPCKLQDQ	x, x

// MARK sets bit i of mask where byte i of the 16 at src needs escaping:
// below 0x20 or above 0x7f (both less than 0x20 as signed bytes), or one
// of " & < > \.
#define MARK(src, mask) \
	MOVOU	src, X0; \
	MOVO	X8, X1; \
	PCMPGTB	X0, X1; \
	MOVO	X0, X2; \
	PCMPEQB	X9, X2; \
	POR	X2, X1; \
	MOVO	X0, X2; \
	PCMPEQB	X10, X2; \
	POR	X2, X1; \
	MOVO	X0, X2; \
	PCMPEQB	X11, X2; \
	POR	X2, X1; \
	MOVO	X0, X2; \
	PCMPEQB	X12, X2; \
	POR	X2, X1; \
	PCMPEQB	X13, X0; \
	POR	X0, X1; \
	PMOVMSKB	X1, mask

// func plainPrefix(s []byte) int
TEXT ·plainPrefix(SB), NOSPLIT, $0-32
	MOVQ	s_base+0(FP), SI
	MOVQ	s_len+8(FP), BX
	XORQ	CX, CX
	CMPQ	BX, $16
	JB	done
	BROADCAST(0x20, X8)
	BROADCAST(0x22, X9)
	BROADCAST(0x26, X10)
	BROADCAST(0x3c, X11)
	BROADCAST(0x3e, X12)
	BROADCAST(0x5c, X13)
	LEAQ	-16(BX), DX // where the last block starts

loop:
	CMPQ	CX, DX
	JA	last
	MARK((SI)(CX*1), AX)
	TESTL	AX, AX
	JNZ	found
	ADDQ	$16, CX
	JMP	loop

last:
	// Fewer than 16 bytes are left: check the last 16, whose bytes before
	// CX are plain already.
	CMPQ	CX, BX
	JEQ	done
	MOVQ	DX, CX
	MARK((SI)(CX*1), AX)
	TESTL	AX, AX
	JNZ	found
	MOVQ	BX, CX
	JMP	done

found:
	BSFL	AX, AX
	ADDQ	AX, CX

done:
	MOVQ	CX, ret+24(FP)
	RET
