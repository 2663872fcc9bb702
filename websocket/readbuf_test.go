package websocket

import (
	"bytes"
	"testing"
)

// TestStalledReadShrinksLargeBuffer: after a large message the next socket
// read takes the 128 KiB buffer; a peer that then sends part of a frame and
// stops must not pin it while the connection waits: what is buffered moves
// to a 32 KiB pooled buffer when a read finds the socket empty. The event
// loop's read (readAvailable) is used because it returns at that point
// instead of waiting, which a reading goroutine does on the same path.
func TestStalledReadShrinksLargeBuffer(t *testing.T) {
	peer, sock := tcpPair(t)
	defer peer.Close()
	defer sock.Close()
	var b readBuffer
	b.setSource(sock)
	if b.raw == nil {
		t.Skip("no raw socket reads on this platform")
	}
	b.nonblocking = true
	readUntil := func(n int) {
		t.Helper()
		for b.buffered() < n {
			if _, err := b.readAvailable(0); err != nil {
				t.Fatal(err)
			}
		}
	}

	const large = 70 << 10
	if _, err := peer.Write(make([]byte, large)); err != nil {
		t.Fatal(err)
	}
	readUntil(large)
	b.consume(large)
	b.wantLarge(large)
	b.releaseIdle()

	part := []byte{0x82, 0x7e, 0x10} // a frame header cut short
	if _, err := peer.Write(part); err != nil {
		t.Fatal(err)
	}
	readUntil(len(part))
	if len(b.buf) != largeReadBufferSize {
		t.Fatalf("after a large message the read took %d bytes of buffer, want %d", len(b.buf), largeReadBufferSize)
	}
	if n, err := b.readAvailable(0); n != 0 || err != nil { // finds the socket empty
		t.Fatalf("read of an empty socket: %d, %v", n, err)
	}
	if len(b.buf) != socketReadBufferSize || !bytes.Equal(b.bytes(), part) {
		t.Errorf("waiting mid-frame holds %d bytes of buffer with %x, want %d with %x", len(b.buf), b.bytes(), socketReadBufferSize, part)
	}
	b.consume(b.buffered())
	b.releaseIdle()
	if b.big != nil {
		t.Error("a drained buffer was kept")
	}
}
