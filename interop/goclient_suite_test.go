package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// goClient is a Go peer used as a client of our server (gorilla, coder).
type goClient interface {
	// dial connects; chunk > 0 asks for a connection that sends messages
	// fragmented in chunk-byte frames, chunk == 0 for one frame per message;
	// deflate: offer permessage-deflate (the peer's default otherwise).
	dial(ctx context.Context, url string, chunk int, deflate bool) (clientConn, error)
	// rejectedCloseCode returns the error a peer reports instead of a
	// CloseError when it receives a close frame with code, for codes the peer
	// refuses although the RFC/IANA registry allows them; "" otherwise.
	rejectedCloseCode(code int) string
}

type clientConn interface {
	send(ctx context.Context, kind string, p []byte) error
	sendFrag(ctx context.Context, kind string, p []byte, chunk int) error
	recv(ctx context.Context) (kind string, p []byte, err error)
	// closeStatus extracts the close code and reason from a recv error.
	closeStatus(err error) (code int, reason string, ok bool)
	// ping sends a ping and waits for the pong carrying the same payload
	// (while a concurrent read runs), then checks the connection still echoes.
	ping(ctx context.Context) error
	// closeHandshake sends a close frame and waits for the echo; it returns the
	// echoed code.
	closeHandshake(code int, reason string) (echoCode int, err error)
	closeNow()
}

// runGoClientSuite runs every interop case with a Go peer as client of our
// server, in each of our server's modes.
func runGoClientSuite(t *testing.T, cl goClient) {
	for _, m := range ourServerModes {
		t.Run(m.name, func(t *testing.T) { runGoClientCases(t, cl, newOurServer(t, m.events)) })
	}
}

func runGoClientCases(t *testing.T, cl goClient, srv *ourServer) {

	for _, comp := range compressions {
		for _, mode := range modes {
			for _, kind := range kinds {
				for _, size := range sizes {
					name := msgCase(comp, mode, kind, size)
					t.Run(name, func(t *testing.T) {
						srvMode, chunk := "echo", 0
						switch mode {
						case "peer-frag":
							chunk = fragChunk(size)
						case "our-frag":
							srvMode = "stream"
						}
						ctx, cancel := opCtx()
						defer cancel()
						c, err := cl.dial(ctx, srv.url(srvMode, name), chunk, comp == "deflate")
						if err != nil {
							t.Fatalf("dial: %v", err)
						}
						defer c.closeNow()
						want := payload(kind, size)
						// Send while receiving: a streaming echo sends the message
						// back while it arrives, and TCP buffers are smaller than 16 MiB.
						sent := make(chan error, 1)
						go func() {
							if chunk > 0 {
								sent <- c.sendFrag(ctx, kind, clone(want), chunk)
							} else {
								sent <- c.send(ctx, kind, clone(want))
							}
						}()
						gotKind, got, err := c.recv(ctx)
						if serr := <-sent; serr != nil {
							t.Fatalf("send %s %d B: %v", kind, size, serr)
						}
						if err != nil {
							t.Fatalf("receiving the echo of %s %d B: %v", kind, size, err)
						}
						checkEcho(t, kind, want, gotKind, got)
						if code, err := c.closeHandshake(1000, ""); err != nil || code != 1000 {
							t.Errorf("close 1000: echo code %d, err %v; want 1000, nil", code, err)
						}
						checkWire(t, srv.wire, name, comp, mode, size, true)
					})
				}
			}
		}
	}

	t.Run("ping-peer", func(t *testing.T) {
		ctx, cancel := opCtx()
		defer cancel()
		c, err := cl.dial(ctx, srv.url("echo", "ping-peer"), 0, false)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.closeNow()
		if err := c.ping(ctx); err != nil {
			t.Fatalf("peer's ping not answered by our server: %v", err)
		}
		if code, err := c.closeHandshake(1000, ""); err != nil || code != 1000 {
			t.Errorf("close 1000: echo code %d, err %v; want 1000, nil", code, err)
		}
	})

	t.Run("ping-ours", func(t *testing.T) {
		ctx, cancel := opCtx()
		defer cancel()
		c, err := cl.dial(ctx, srv.url("echo", "ping-ours"), 0, false)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.closeNow()
		if err := c.send(ctx, "text", []byte("#cmd ping")); err != nil {
			t.Fatal(err)
		}
		kind, p, err := c.recv(ctx)
		if err != nil || kind != "text" || string(p) != "#ok ping" {
			t.Fatalf("after our server's Ping: got %s %q, err %v; want text \"#ok ping\"", kind, p, err)
		}
		if code, err := c.closeHandshake(1000, ""); err != nil || code != 1000 {
			t.Errorf("close 1000: echo code %d, err %v; want 1000, nil", code, err)
		}
	})

	for _, code := range closeCodes {
		name := fmt.Sprintf("close-peer-%d", code)
		t.Run(name, func(t *testing.T) {
			ctx, cancel := opCtx()
			defer cancel()
			c, err := cl.dial(ctx, srv.url("echo", name), 0, false)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.closeNow()
			echo, err := c.closeHandshake(code, closeReason(code))
			if quirk := cl.rejectedCloseCode(code); quirk != "" {
				if err == nil || !strings.Contains(err.Error(), quirk) {
					t.Errorf("peer: echo code %d, err %v; want the peer's own rejection %q", echo, err, quirk)
				}
			} else if err != nil || echo != code {
				t.Errorf("peer observed echo code %d, err %v; want %d, nil", echo, err, code)
			}
			if o, ok := srv.obs.wait(t, name); ok {
				checkOurCloseError(t, "our server", o.err, code, closeReason(code), true)
			}
		})
	}

	for _, code := range closeCodes {
		name := fmt.Sprintf("close-ours-%d", code)
		t.Run(name, func(t *testing.T) {
			ctx, cancel := opCtx()
			defer cancel()
			c, err := cl.dial(ctx, srv.url("echo", name), 0, false)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.closeNow()
			if err := c.send(ctx, "text", closeCmd(code)); err != nil {
				t.Fatal(err)
			}
			kind, p, err := c.recv(ctx)
			if err == nil {
				t.Fatalf("got a %s message %q, want the close frame %d", kind, p, code)
			}
			if quirk := cl.rejectedCloseCode(code); quirk != "" {
				if !strings.Contains(err.Error(), quirk) {
					t.Errorf("peer: %v; want the peer's own rejection %q", err, quirk)
				}
			} else {
				gotCode, gotReason, ok := c.closeStatus(err)
				if !ok || gotCode != code || gotReason != closeReason(code) {
					t.Errorf("peer observed close %d %q (close frame: %v, err %v); want %d %q",
						gotCode, gotReason, ok, err, code, closeReason(code))
				}
			}
			srv.obs.wait(t, name)
		})
	}
}

// checkOurCloseError checks an error of our package is the *CloseError expected.
func checkOurCloseError(t *testing.T, who string, err error, code int, reason string, remote bool) {
	t.Helper()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Errorf("%s: got error %v (%T), want *websocket.CloseError{Code: %d, Reason: %q, Remote: %v}",
			who, err, err, code, reason, remote)
		return
	}
	if int(ce.Code) != code || ce.Reason != reason || ce.Remote != remote {
		t.Errorf("%s: got CloseError{Code: %d, Reason: %q, Remote: %v}, want {%d, %q, %v}",
			who, ce.Code, ce.Reason, ce.Remote, code, reason, remote)
	}
	wantEOF := remote && (code == 1000 || code == 1001)
	if errors.Is(err, io.EOF) != wantEOF {
		t.Errorf("%s: errors.Is(%v, io.EOF) = %v, want %v", who, err, !wantEOF, wantEOF)
	}
}
