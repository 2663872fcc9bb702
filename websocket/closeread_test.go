package websocket_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// A server that only pushes answers the client's pings and sees its own
// pongs through CloseRead, and the client's close ends the push loop.
func TestCloseReadAnswersPingsWhileWriting(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	serverPinged := make(chan error, 1)
	cause := make(chan error, 1)
	url, result := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		ctx = c.CloseRead(ctx)
		pinged := false
		for {
			if err := c.Write(ctx, websocket.MessageText, []byte("tick")); err != nil {
				// The write may fail on the close frame the reader echoed
				// before the context is cancelled; the cause says why.
				<-ctx.Done()
				cause <- context.Cause(ctx)
				return context.Cause(ctx)
			}
			if !pinged {
				// The pong comes back through CloseRead's goroutine.
				serverPinged <- c.Ping(ctx)
				pinged = true
			}
		}
	})
	c := wsDial(t, url, nil)
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, err := c.Read(ctx); err != nil {
				readErr <- err
				return
			}
		}
	}()
	for range 5 {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping while the server only writes: %v", err)
		}
	}
	if err := recv(t, ctx, serverPinged); err != nil {
		t.Fatalf("server ping: %v", err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := recv(t, ctx, readErr); !errors.Is(err, io.EOF) {
		t.Fatalf("client read ended with %v, want the server's echo of 1000", err)
	}
	err := recv(t, ctx, cause)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || !ce.Remote || !errors.Is(err, io.EOF) {
		t.Fatalf("cause of the returned context: %v, want the peer's 1000", err)
	}
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("Open: %v", err)
	}
}

// The peer's close ends the reading goroutine and the returned context,
// with the peer's code as the cause.
func TestCloseReadPeerCloseEndsContext(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	cause := make(chan error, 1)
	url, result := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		ctx = c.CloseRead(ctx)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil
	})
	c := wsDial(t, url, nil)
	if err := c.Close(websocket.StatusGoingAway, "leaving"); err != nil {
		t.Fatalf("close: %v", err)
	}
	err := recv(t, ctx, cause)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "leaving" || !ce.Remote {
		t.Fatalf("cause: %v, want the peer's 1001", err)
	}
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("Open: %v", err)
	}
}

// A data message fails the connection with 1008.
func TestCloseReadDataMessageIsPolicyViolation(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	cause := make(chan error, 1)
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		ctx = c.CloseRead(ctx)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return context.Cause(ctx)
	})
	c := wsDial(t, url, nil)
	if err := c.Write(ctx, websocket.MessageText, []byte("hello?")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(ctx)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || !ce.Remote || ce.Reason != "unexpected data message" {
		t.Fatalf("client read: %v, want the server's 1008", err)
	}
	err = recv(t, ctx, cause)
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Remote {
		t.Fatalf("cause: %v, want our own 1008", err)
	}
}

// Cancelling ctx stops the goroutine and leaves the connection open, to be
// read again.
func TestCloseReadCancelLeavesConnectionOpen(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, result := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		rctx, cancel := context.WithCancel(ctx)
		done := c.CloseRead(rctx)
		cancel()
		<-done.Done()
		if err := context.Cause(done); !errors.Is(err, context.Canceled) {
			t.Errorf("cause: %v, want context.Canceled", err)
		}
		// Tell the client that reading is ours again.
		if err := c.Write(ctx, websocket.MessageText, []byte("ready")); err != nil {
			return err
		}
		msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		return c.Write(ctx, websocket.MessageText, append([]byte("echo: "), msg.Data...))
	})
	c := wsDial(t, url, nil)
	if msg, err := c.Read(ctx); err != nil || string(msg.Data) != "ready" {
		t.Fatalf("read: %q, %v", msg.Data, err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if msg, err := c.Read(ctx); err != nil || string(msg.Data) != "echo: hi" {
		t.Fatalf("read: %q, %v", msg.Data, err)
	}
	if _, err := c.Read(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the handler returned: %v, want a normal close", err)
	}
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("Open: %v", err)
	}
}
