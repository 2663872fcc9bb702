package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

// sameArray reports whether a and b share their backing array's start.
func sameArray(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:cap(a)][0] == &b[:cap(b)][0]
}

// TestReadInto sends messages that fit the buffer and messages that do not,
// plain and compressed, whole and fragmented, both ways: the server echoes
// with ReadInto and reports what it saw, and the client reads the echoes
// with ReadInto too.
func TestReadInto(t *testing.T) {
	type seen struct {
		reused, compressed bool
	}
	report := make(chan seen, 16)
	co := &CompressionOptions{Threshold: 256} // text of 256 bytes or more is compressed
	ended := make(chan error, 1)
	url, _ := serve(t, &AcceptOptions{Options: Options{Compression: co}}, func(ctx context.Context, c *Conn) error {
		buf := make([]byte, 0, 1024)
		for {
			msg, err := c.ReadInto(ctx, buf)
			if err != nil {
				ended <- err
				return err
			}
			report <- seen{reused: sameArray(msg.Data, buf), compressed: c.rs.compressed}
			buf = msg.Data
			if len(msg.Data) > 4000 {
				w, err := c.Writer(ctx, msg.Type) // fragments, compressed as a stream
				if err != nil {
					return err
				}
				for p := msg.Data; len(p) > 0; p = p[min(len(p), 1500):] {
					w.Write(p[:min(len(p), 1500)])
				}
				err = w.Close()
				if err != nil {
					return err
				}
				continue
			}
			if err := c.Write(ctx, msg.Type, msg.Data); err != nil {
				return err
			}
		}
	})
	c := dial(t, url, &DialOptions{Options: Options{Compression: co}})
	ctx := testCtx(t)
	rng := newTestRand()
	cases := []struct {
		typ        MessageType
		data       []byte
		fits       bool // in the buffer as the previous messages left it
		compressed bool
	}{
		{MessageBinary, bytes.Repeat([]byte{7}, 100), true, false},
		{MessageText, chatLike(rng, 900), true, true},
		{MessageBinary, bytes.Repeat([]byte{9}, 5000), false, false},
		{MessageText, chatLike(rng, 4500), true, true},
		{MessageText, chatLike(rng, 20000), false, true},
		{MessageBinary, []byte{}, true, false},
		{MessageText, []byte("short"), true, false},
	}
	buf := make([]byte, 3, 1024) // its length does not matter
	for i, tc := range cases {
		if err := c.Write(ctx, tc.typ, tc.data); err != nil {
			t.Fatal(err)
		}
		msg, err := c.ReadInto(ctx, buf)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if msg.Type != tc.typ || !bytes.Equal(msg.Data, tc.data) || msg.Data == nil {
			t.Fatalf("message %d: echo differs (%v, %d bytes)", i, msg.Type, len(msg.Data))
		}
		if got := sameArray(msg.Data, buf); got != tc.fits {
			t.Errorf("message %d (%d bytes, buffer cap %d): client reused the buffer %v, want %v", i, len(tc.data), cap(buf), got, tc.fits)
		}
		if c.rs.compressed != tc.compressed {
			t.Errorf("message %d: client read compressed %v, want %v", i, c.rs.compressed, tc.compressed)
		}
		if s := <-report; s.reused != tc.fits || s.compressed != tc.compressed {
			t.Errorf("message %d: server reused %v compressed %v, want %v %v", i, s.reused, s.compressed, tc.fits, tc.compressed)
		}
		buf = msg.Data
	}

	// The close ends ReadInto as it ends Read.
	c.Close(StatusNormalClosure, "bye")
	err := <-ended
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != StatusNormalClosure || !ce.Remote || !errors.Is(err, io.EOF) {
		t.Fatalf("server's ReadInto ended with %v, want the peer's normal close", err)
	}
}

// TestReadIntoProtocolError checks that ReadInto fails the connection as
// Read does: a text message that is not UTF-8 gets close code 1007.
func TestReadIntoProtocolError(t *testing.T) {
	result := make(chan error, 1)
	url, _ := serve(t, nil, func(ctx context.Context, c *Conn) error {
		_, err := c.ReadInto(ctx, make([]byte, 64))
		result <- err
		return err
	})
	c := dial(t, url, &DialOptions{Options: Options{Compression: &CompressionOptions{Disabled: true}}})
	ctx := testCtx(t)
	if err := c.Write(ctx, MessageText, []byte{0xff, 0xfe}); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, StatusInvalidFramePayloadData, true)
	var ce *CloseError
	if err := <-result; !errors.As(err, &ce) || ce.Code != StatusInvalidFramePayloadData || ce.Remote {
		t.Fatalf("ReadInto: %v", fmt.Sprint(err))
	}
}
