package websocket

import (
	"encoding/binary"
	"math/bits"
)

// maskBytes XORs b with the masking key (RFC 6455 §5.3) and returns the key
// rotated so that a following call continues where this one stopped. key is
// the four key bytes read as a little-endian uint32.
//
// It is maskCopy in place: maskCopy reads each word before it writes it.
func maskBytes(key uint32, b []byte) uint32 { return maskCopy(key, b, b) }

// maskCopy copies src into dst (which must be as long) XORed with the
// masking key, and returns the key rotated as maskBytes does. Unmasking
// while copying out of the read buffer passes over the payload once instead
// of twice (a copy, then maskBytes in place).
func maskCopy(key uint32, dst, src []byte) uint32 {
	dst = dst[:len(src)]
	n := maskBlocks(key, dst, src) // a multiple of 4 bytes: key unchanged
	return maskCopyGeneric(key, dst[n:], src[n:])
}

// maskCopyGeneric is maskCopy in portable Go, eight bytes at a time: all of
// it where there is no vector version (mask_other.go), the tail shorter than
// a vector block where there is.
func maskCopyGeneric(key uint32, dst, src []byte) uint32 {
	dst = dst[:len(src)]
	if len(src) >= 8 {
		k := uint64(key)<<32 | uint64(key)
		for len(src) >= 32 && len(dst) >= 32 {
			v0 := binary.LittleEndian.Uint64(src[0:8])
			v1 := binary.LittleEndian.Uint64(src[8:16])
			v2 := binary.LittleEndian.Uint64(src[16:24])
			v3 := binary.LittleEndian.Uint64(src[24:32])
			binary.LittleEndian.PutUint64(dst[0:8], v0^k)
			binary.LittleEndian.PutUint64(dst[8:16], v1^k)
			binary.LittleEndian.PutUint64(dst[16:24], v2^k)
			binary.LittleEndian.PutUint64(dst[24:32], v3^k)
			src, dst = src[32:], dst[32:]
		}
		for len(src) >= 8 && len(dst) >= 8 {
			binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^k)
			src, dst = src[8:], dst[8:]
		}
	}
	for i := range src {
		dst[i] = src[i] ^ byte(key)
		key = bits.RotateLeft32(key, -8)
	}
	return key
}
