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
// Below 64 bytes the portable loop is as fast as the call.
func maskBlocks(key uint32, dst, src []byte) int {
	if len(src) < 64 {
		return 0
	}
	n := len(src) &^ 15
	_ = dst[n-1] // dst is at least as long as src
	maskBlocksSSE2(&dst[0], &src[0], n, uint64(key)<<32|uint64(key))
	return n
}
