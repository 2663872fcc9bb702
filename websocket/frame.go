package websocket

import (
	"encoding/binary"
)

// opcode is a frame opcode (RFC 6455 §5.2).
type opcode byte

const (
	opContinuation opcode = 0x0
	opText         opcode = 0x1
	opBinary       opcode = 0x2
	opClose        opcode = 0x8
	opPing         opcode = 0x9
	opPong         opcode = 0xA
)

func (op opcode) isControl() bool { return op&0x8 != 0 }

// Bits of the first header byte.
const (
	bitFIN  = 0x80
	bitRSV1 = 0x40
	bitRSV2 = 0x20
	bitRSV3 = 0x10
	bitMask = 0x80
)

const (
	maxHeaderSize     = 14  // 2 + 8 (64-bit length) + 4 (mask key)
	maxControlPayload = 125 // RFC 6455 §5.5
)

// frameHeader is a decoded frame header.
type frameHeader struct {
	fin    bool
	rsv    byte // the RSV1..RSV3 bits, in place (0x70 mask)
	opcode opcode
	masked bool
	key    uint32 // masking key, little-endian as it appears on the wire
	length int64
}

// appendFrameHeader appends the wire form of h, using the shortest length
// encoding as RFC 6455 §5.2 requires.
func appendFrameHeader(b []byte, h frameHeader) []byte {
	b0 := byte(h.opcode) | h.rsv
	if h.fin {
		b0 |= bitFIN
	}
	var b1 byte
	if h.masked {
		b1 = bitMask
	}
	switch {
	case h.length <= 125:
		b = append(b, b0, b1|byte(h.length))
	case h.length <= 0xFFFF:
		b = append(b, b0, b1|126, byte(h.length>>8), byte(h.length))
	default:
		b = append(b, b0, b1|127)
		b = binary.BigEndian.AppendUint64(b, uint64(h.length))
	}
	if h.masked {
		b = binary.LittleEndian.AppendUint32(b, h.key)
	}
	return b
}

// frameHeaderSize returns how many bytes the header starting with b0, b1 takes.
func frameHeaderSize(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&bitMask != 0 {
		n += 4
	}
	return n
}

// bufferedFrameHeader parses the frame header at the start of b, for walks
// over buffered frames that must not wait for more: ok is false while b
// does not hold the whole header yet; err is parseFrameHeader's.
func bufferedFrameHeader(b []byte) (h frameHeader, hlen int, ok bool, err error) {
	if len(b) < 2 || len(b) < frameHeaderSize(b[1]) {
		return frameHeader{}, 0, false, nil
	}
	h, hlen, err = parseFrameHeader(b)
	return h, hlen, true, err
}

// parseFrameHeader decodes a header from b, which must hold at least
// frameHeaderSize(b[1]) bytes. It checks what the header alone can tell: the
// minimal length encoding, the 63-bit limit and the control frame rules.
// Masking direction, RSV bits and opcode sequencing are checked by the reader,
// which knows the connection's role and state.
func parseFrameHeader(b []byte) (frameHeader, int, error) {
	h := frameHeader{
		fin:    b[0]&bitFIN != 0,
		rsv:    b[0] & (bitRSV1 | bitRSV2 | bitRSV3),
		opcode: opcode(b[0] & 0x0F),
		masked: b[1]&bitMask != 0,
	}
	n := 2
	switch l := b[1] & 0x7F; l {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		n += 2
		if h.length < 126 {
			return h, n, protoErr("frame length not minimally encoded")
		}
	case 127:
		v := binary.BigEndian.Uint64(b[2:])
		n += 8
		if v>>63 != 0 {
			return h, n, protoErr("frame length has its most significant bit set")
		}
		if v <= 0xFFFF {
			return h, n, protoErr("frame length not minimally encoded")
		}
		h.length = int64(v)
	default:
		h.length = int64(l)
	}
	if h.masked {
		h.key = binary.LittleEndian.Uint32(b[n:])
		n += 4
	}
	if h.opcode.isControl() {
		if !h.fin {
			return h, n, protoErr("fragmented control frame")
		}
		if h.length > maxControlPayload {
			return h, n, protoErr("control frame payload over 125 bytes")
		}
	}
	return h, n, nil
}
