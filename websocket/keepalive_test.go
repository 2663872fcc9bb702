package websocket

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// A peer that answers every ping is pinged again and again and stays
// connected; one that stops answering is failed, with 1011 sent to it and
// 1006 for the server's reader, from the one keepalive scheduler.
func TestKeepalivePingsAnsweringPeerThenFailsSilentOne(t *testing.T) {
	url, result := serve(t, &AcceptOptions{Options: Options{PingInterval: 10 * time.Millisecond, PongTimeout: 100 * time.Millisecond}},
		func(ctx context.Context, c *Conn) error {
			for {
				if _, err := c.Read(ctx); err != nil {
					return err
				}
			}
		})
	u := strings.TrimPrefix(url, "ws://")
	conn, err := net.Dial("tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", u)
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	readFrame := func() (opcode, []byte) {
		t.Helper()
		var hdr [2]byte
		if _, err := br.Read(hdr[:1]); err != nil {
			t.Fatal(err)
		}
		if _, err := br.Read(hdr[1:]); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, hdr[1]&0x7f)
		for n := 0; n < len(p); {
			k, err := br.Read(p[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
		return opcode(hdr[0] & 0x0f), p
	}
	// Answer ten pings, each with a masked pong.
	for i := range 10 {
		op, p := readFrame()
		if op != opPing {
			t.Fatalf("frame %d: opcode %v, want a ping", i, op)
		}
		pong := appendFrameHeader(nil, frameHeader{fin: true, opcode: opPong, masked: true, length: int64(len(p))})
		conn.Write(append(pong, p...)) // a zero key leaves the payload as it is
	}
	// Now stay silent: the next ping goes unanswered.
	for {
		op, p := readFrame()
		if op == opPing {
			continue
		}
		if op != opClose || len(p) < 2 || StatusCode(int(p[0])<<8|int(p[1])) != StatusInternalError {
			t.Fatalf("after the pongs stopped: opcode %v payload %q, want a close with 1011", op, p)
		}
		break
	}
	err = <-result
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != StatusAbnormalClosure || ce.Reason != keepaliveTimeoutReason {
		t.Fatalf("the server's handler ended with %v, want 1006 %q", err, keepaliveTimeoutReason)
	}
}
