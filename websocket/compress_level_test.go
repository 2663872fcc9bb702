package websocket

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
)

// TestCompressionLevelWithSmallWindow checks that Level is honoured under
// the 13-bit window that Duplex peers negotiate by default. It used to be
// ignored below 15 bits: every level got klauspost's windowed encoder, so
// level 1 and level 9 produced the same bytes.
//
// The server sends a run of messages with context takeover (the first sized
// for the comparison, the others filling the history, the last larger than
// the window), and the client echoes them, reporting the compressed size of
// each. The receivers keep only 2^13 bytes of history, so a reference past
// the window would fail to inflate.
func TestCompressionLevelWithSmallWindow(t *testing.T) {
	rng := newTestRand()
	msgs := [][]byte{chatLike(rng, 2<<10), chatLike(rng, 6<<10), chatLike(rng, 8<<10), chatLike(rng, 3<<10), chatLike(rng, 12<<10)}
	type sizes struct{ fromServer, fromClient []int64 }
	got := map[int]sizes{}
	for _, level := range []int{1, 9} {
		co := &CompressionOptions{Level: level}
		fromClient := make(chan []int64, 1)
		url, _ := serve(t, &AcceptOptions{Options: Options{Compression: co}}, func(ctx context.Context, c *Conn) error {
			if c.deflate == nil || c.deflate.params.sendWindowBits != 13 {
				return fmt.Errorf("server: want a 13-bit send window, have %+v", c.deflate)
			}
			var wire []int64
			for _, m := range msgs {
				if err := c.Write(ctx, MessageText, m); err != nil {
					return err
				}
				echo, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if !bytes.Equal(echo.Data, m) || !c.rs.compressed {
					return fmt.Errorf("server: echo of %d bytes differs or was not compressed", len(m))
				}
				wire = append(wire, c.rs.size)
			}
			fromClient <- wire
			_, err := c.Read(ctx) // until the client closes
			return err
		})
		c := dial(t, url, &DialOptions{Options: Options{Compression: co}})
		if c.deflate == nil || c.deflate.params.sendWindowBits != 13 || c.deflate.params.recvWindowBits != 13 {
			t.Fatalf("level %d: want 13-bit windows both ways, have %+v", level, c.deflate)
		}
		ctx := testCtx(t)
		var s sizes
		for i, m := range msgs {
			msg, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("level %d message %d: %v", level, i, err)
			}
			if !bytes.Equal(msg.Data, m) || !c.rs.compressed {
				t.Fatalf("level %d message %d: %d bytes arrived differently (compressed %v)", level, i, len(m), c.rs.compressed)
			}
			s.fromServer = append(s.fromServer, c.rs.size)
			if err := c.Write(ctx, MessageText, msg.Data); err != nil {
				t.Fatal(err)
			}
		}
		s.fromClient = <-fromClient
		c.Close(StatusNormalClosure, "")
		got[level] = s
		t.Logf("level %d: compressed sizes from server %v, from client %v (plain %v)", level, s.fromServer, s.fromClient, lens(msgs))
	}
	if got[9].fromServer[0] >= got[1].fromServer[0] || got[9].fromClient[0] >= got[1].fromClient[0] {
		t.Fatalf("a %d-byte message compressed at level 9 is not smaller than at level 1: server %d vs %d, client %d vs %d",
			len(msgs[0]), got[9].fromServer[0], got[1].fromServer[0], got[9].fromClient[0], got[1].fromClient[0])
	}
}

func lens(msgs [][]byte) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, strconv.Itoa(len(m)))
	}
	return s
}
