package websocket

import (
	"bytes"
	"errors"
	"math/bits"
	"testing"
)

func TestFrameHeaderRoundTrip(t *testing.T) {
	for _, length := range []int64{0, 1, 125, 126, 127, 0xFFFF, 0x10000, 1 << 40} {
		for _, masked := range []bool{false, true} {
			h := frameHeader{fin: true, rsv: bitRSV1, opcode: opBinary, masked: masked, length: length}
			if masked {
				h.key = 0xA1B2C3D4
			}
			b := appendFrameHeader(nil, h)
			if n := frameHeaderSize(b[1]); n != len(b) {
				t.Fatalf("length %d: header size %d, encoded %d bytes", length, n, len(b))
			}
			got, n, err := parseFrameHeader(b)
			if err != nil || n != len(b) || got != h {
				t.Fatalf("length %d masked %v: got %+v n=%d err=%v", length, masked, got, n, err)
			}
		}
	}
}

func TestFrameHeaderRejects(t *testing.T) {
	cases := map[string][]byte{
		"16-bit length under 126":   {0x82, 126, 0x00, 0x7D},
		"64-bit length under 65536": {0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF},
		"64-bit length with MSB":    {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0},
		"fragmented ping":           {0x09, 0x00},
		"126-byte ping":             {0x89, 126, 0x00, 126},
	}
	for name, b := range cases {
		_, _, err := parseFrameHeader(b)
		var pe *protocolError
		if !errors.As(err, &pe) || pe.code != StatusProtocolError {
			t.Errorf("%s: got %v, want a 1002 protocol error", name, err)
		}
	}
}

func naiveMask(key [4]byte, pos int, b []byte) {
	for i := range b {
		b[i] ^= key[(pos+i)%4]
	}
}

func TestMaskMatchesDefinition(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	k := uint32(key[0]) | uint32(key[1])<<8 | uint32(key[2])<<16 | uint32(key[3])<<24
	for _, n := range []int{0, 1, 3, 7, 8, 9, 31, 32, 33, 100, 1000} {
		for split := 0; split <= n; split += 1 + n/7 {
			p := bytes.Repeat([]byte{0xAA, 0x55, 0x0F}, n)[:n]
			want := bytes.Clone(p)
			naiveMask(key, 0, want)
			next := maskBytes(k, p[:split])
			maskBytes(next, p[split:])
			if !bytes.Equal(p, want) {
				t.Fatalf("n=%d split=%d: masked bytes differ", n, split)
			}
			if split%4 == 0 && next != k {
				t.Fatalf("key after %d bytes: %x, want %x", split, next, k)
			}
			if split%4 == 1 && next != bits.RotateLeft32(k, -8) {
				t.Fatalf("key after %d bytes not rotated", split)
			}
		}
	}
}
