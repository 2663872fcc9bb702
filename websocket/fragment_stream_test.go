package websocket

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// TestReaderReturnsFragmentBeforeNextFrame: a Reader hands over a non-final
// frame's payload without waiting for the next frame's header. A peer that
// sends the first fragment and holds back the rest until it gets an answer
// (a request streamed in parts, each acknowledged) would otherwise wait
// for the reader while the reader waits for it.
func TestReaderReturnsFragmentBeforeNextFrame(t *testing.T) {
	serverEnd, clientEnd := net.Pipe()
	defer clientEnd.Close()
	c := newConn(connConfig{t: newSocketTransport(serverEnd), opts: &Options{}})
	defer c.CloseNow()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	key := [4]byte{1, 2, 3, 4}
	frame := func(first byte, payload string) []byte {
		b := []byte{first, 0x80 | byte(len(payload)), key[0], key[1], key[2], key[3]}
		p := []byte(payload)
		maskBytes(binary.LittleEndian.Uint32(key[:]), p)
		return append(b, p...)
	}
	go clientEnd.Write(frame(0x01, "hello")) // text, not final

	_, r, err := c.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := r.Read(buf)
		if err != nil {
			t.Errorf("read of the first fragment: %v", err)
		}
		got <- string(buf[:n])
	}()
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("first fragment read as %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first fragment's bytes were held back until the next frame arrived")
	}

	go clientEnd.Write(frame(0x80, " world")) // continuation, final
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != " world" {
		t.Fatalf("rest of the message: %q, %v", rest, err)
	}
}
