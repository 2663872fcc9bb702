//go:build !purego

package websocket

// maskBlocksSSE2 XORs n bytes of src, a multiple of 16, into dst with key2
// (the key twice) in 16-byte registers (mask_amd64.s). SSE2 is part of
// amd64 itself, so no CPU check is needed; an AVX2 loop measured no faster
// at 16-64 KiB.
//
//go:noescape
func maskBlocksSSE2(dst, src *byte, n int, key2 uint64)

// maskBlocks masks the longest prefix of src that is a whole number of
// 16-byte blocks into dst, in vector registers, and returns its length. The
// prefix is a multiple of 4 bytes, so the key needs no rotation after it.
// Below 256 bytes the portable loop is as fast or faster, the call
// included (64 B: 7 ns against 11; 128 B: 12-18 against 16-22; from 256 B
// on the vector loop wins: 15 ns against 18-27).
func maskBlocks(key uint32, dst, src []byte) int {
	if len(src) < 256 {
		return 0
	}
	n := len(src) &^ 15
	_ = dst[n-1] // dst is at least as long as src
	maskBlocksSSE2(&dst[0], &src[0], n, uint64(key)<<32|uint64(key))
	return n
}
