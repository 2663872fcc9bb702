package websocket

import (
	"bytes"
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
