//go:build !amd64 || purego

package websocket

// maskBlocks has no vector version here: maskCopy's portable loop masks
// everything.
func maskBlocks(key uint32, dst, src []byte) int { return 0 }
