package websocket

import (
	"bytes"
	"context"
	"testing"
)

// clientFrame builds a frame as a client sends it: masked.
func clientFrame(op opcode, fin bool, payload []byte) []byte {
	const key = 0x01020304
	frame := appendFrameHeader(nil, frameHeader{fin: fin, opcode: op, masked: true, key: key, length: int64(len(payload))})
	start := len(frame)
	frame = append(frame, payload...)
	maskBytes(key, frame[start:])
	return frame
}

// TestMessageReady: MessageReady is true only when a whole message waits in
// the read buffer, control frames before it or not, and false while any
// part of the next message is still to come.
func TestMessageReady(t *testing.T) {
	second := clientFrame(opContinuation, true, []byte("c-2"))
	tr := &scriptedTransport{in: bytes.Join([][]byte{
		clientFrame(opText, true, []byte("a")),
		clientFrame(opPing, true, []byte("p")),
		clientFrame(opBinary, true, []byte("b")),
		clientFrame(opText, false, []byte("c-1")),
		second[:len(second)-1],
	}, nil)}
	c := newConn(connConfig{t: tr})
	ctx := context.Background()
	if c.MessageReady() {
		t.Fatal("MessageReady before anything was read")
	}
	read := func(want string) {
		t.Helper()
		msg, err := c.Read(ctx)
		if err != nil || string(msg.Data) != want {
			t.Fatalf("read %q, %v; want %q", msg.Data, err, want)
		}
	}
	read("a")
	if !c.MessageReady() {
		t.Fatal("MessageReady is false with a ping and a whole message buffered")
	}
	read("b")
	if c.MessageReady() {
		t.Fatal("MessageReady is true with the last byte of the message's final frame missing")
	}
	tr.in = second[len(second)-1:]
	read("c-1c-2")
	if c.MessageReady() {
		t.Fatal("MessageReady is true with nothing buffered")
	}
}

// TestMessageReadyCoalescesAnswers: an echo that flushes only when no
// message is ready answers 16 messages that arrived together with one
// write.
func TestMessageReadyCoalescesAnswers(t *testing.T) {
	client, server := pipePair(t)
	ctx := testCtx(t)
	const batch = 16
	p := make([]byte, 100)
	var buf []byte
	_, writes := messageSyscalls(t, 1, func() {
		for range batch {
			if err := client.SendBinary(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := client.Flush(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		for range batch {
			msg, err := server.ReadInto(ctx, buf)
			if err != nil {
				t.Fatal(err)
			}
			buf = msg.Data
			if err := server.SendBinary(msg.Data); err != nil {
				t.Fatal(err)
			}
			if server.MessageReady() {
				continue
			}
			if err := server.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	})
	for range batch {
		if _, err := client.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if writes > 2 {
		t.Errorf("%d writes for %d answers to messages that arrived together, want 1", writes, batch)
	}
}
