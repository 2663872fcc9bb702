// Package micro holds microbenchmarks of the peers' hot paths where they
// export them: masking and frame headers (gobwas/ws: ws.Cipher, WriteHeader,
// ReadHeader), and a server's message read and write (gobwas/ws, gorilla,
// coder, gws) over an in-memory connection. Duplex's own microbenchmarks of
// the same paths live in the websocket package (bench_test.go), with the same
// sizes, so the two outputs line up:
//
//	cd bench && go test -run x -bench . -benchmem ./micro/
//	cd .. && go test -run x -bench . -benchmem ./websocket/
//
// Unexported hot paths (gws's and coder's masking, nbio's parser) are not
// measured here.
package micro
