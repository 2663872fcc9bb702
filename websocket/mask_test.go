package websocket

import (
	"bytes"
	"math/bits"
	"testing"
)

// TestMaskCopyMatchesDefinition checks that maskCopy, which unmasks while
// copying out of the read buffer, gives the bytes RFC 6455 §5.3 defines and
// leaves the source alone, including when a payload is copied in pieces
// that do not fall on the key's four-byte boundaries.
func TestMaskCopyMatchesDefinition(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	k := uint32(key[0]) | uint32(key[1])<<8 | uint32(key[2])<<16 | uint32(key[3])<<24
	for _, n := range []int{0, 1, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 1000} {
		for split := 0; split <= n; split += 1 + n/7 {
			src := bytes.Repeat([]byte{0xAA, 0x55, 0x0F}, n)[:n]
			orig := bytes.Clone(src)
			want := bytes.Clone(src)
			naiveMask(key, 0, want)
			dst := make([]byte, n)
			next := maskCopy(k, dst[:split], src[:split])
			next = maskCopy(next, dst[split:], src[split:])
			if !bytes.Equal(dst, want) {
				t.Fatalf("n=%d split=%d: unmasked bytes differ", n, split)
			}
			if !bytes.Equal(src, orig) {
				t.Fatalf("n=%d split=%d: the source was modified", n, split)
			}
			if want := maskBytes(k, make([]byte, n)); next != want {
				t.Fatalf("n=%d split=%d: key after the copy %x, want %x", n, split, next, want)
			}
		}
	}
}

// TestMaskCopyMatchesGeneric checks maskCopy (the vector loop, where there
// is one) against the portable loop on every length up to 300, from every key phase, at every alignment
// of source and destination within 16 bytes, copying and in place, and
// that nothing outside the destination is written.
func TestMaskCopyMatchesGeneric(t *testing.T) {
	const guard = 0xC3
	for n := 0; n <= 300; n++ {
		for phase := 0; phase < 4; phase++ {
			key := bits.RotateLeft32(0x9A3F17E5, -8*phase)
			for off := 0; off < 16; off++ {
				src := patternBytes(off + n)[off:]
				want := make([]byte, n)
				wantKey := maskCopyGeneric(key, want, src)

				dstOff := (off * 7) % 16
				buf := bytes.Repeat([]byte{guard}, dstOff+n+32)
				dst := buf[dstOff : dstOff+n]
				if got := maskCopy(key, dst, src); got != wantKey || !bytes.Equal(dst, want) {
					t.Fatalf("copy n=%d phase=%d src+%d dst+%d: bytes or key (%x, want %x) differ", n, phase, off, dstOff, got, wantKey)
				}
				if bytes.Count(buf[:dstOff], []byte{guard}) != dstOff || bytes.Count(buf[dstOff+n:], []byte{guard}) != 32 {
					t.Fatalf("copy n=%d src+%d dst+%d: wrote outside the destination", n, off, dstOff)
				}

				inPlace := bytes.Clone(patternBytes(off + n + 32))
				if got := maskBytes(key, inPlace[off:off+n]); got != wantKey || !bytes.Equal(inPlace[off:off+n], want) {
					t.Fatalf("in place n=%d phase=%d +%d: bytes or key differ", n, phase, off)
				}
				if orig := patternBytes(off + n + 32); !bytes.Equal(inPlace[:off], orig[:off]) || !bytes.Equal(inPlace[off+n:], orig[off+n:]) {
					t.Fatalf("in place n=%d +%d: wrote outside the slice", n, off)
				}
			}
		}
	}
}

// FuzzMaskCopy compares maskCopy with the definition (naiveMask) on
// arbitrary payloads, keys and alignments.
func FuzzMaskCopy(f *testing.F) {
	f.Add([]byte("hello, websocket"), uint32(0x12345678), uint8(3))
	f.Add(bytes.Repeat([]byte{0xFF}, 257), uint32(0xDEADBEEF), uint8(15))
	f.Fuzz(func(t *testing.T, p []byte, k uint32, off uint8) {
		key := [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
		want := bytes.Clone(p)
		naiveMask(key, 0, want)
		shift := int(off % 32)
		dst := make([]byte, shift+len(p))[shift:]
		maskCopy(k, dst, p)
		if !bytes.Equal(dst, want) {
			t.Fatalf("len %d dst+%d: maskCopy differs from the definition", len(p), shift)
		}
	})
}

// patternBytes is n bytes that differ from their neighbours, so that a
// byte masked with the wrong key byte or moved shows.
func patternBytes(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*31 + 7)
	}
	return p
}
