package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// peerServer is a Go peer's echo server (gorilla, coder) speaking the same
// protocol as ourServer: query case=NAME and mode=echo|stream, and the #cmd
// control messages in echo mode; with mode=stream, chunk=N is the size of the
// fragments of its streaming echo; deflate=1 makes it accept permessage-deflate. Its observations say how each connection
// ended on its side.
type peerServer interface {
	url(mode, name string) string
	observations() *obsStore
	wire() *wireStats
	// rejectedCloseCode: as goClient.rejectedCloseCode, for the server side.
	rejectedCloseCode(code int) string
	// badDeflateAnswer returns why the peer's permessage-deflate answer to
	// offer is not a valid acceptance (RFC 7692), for answers a peer is known
	// to give; "" otherwise. Our Dial must then fail the handshake.
	badDeflateAnswer(offer, answer string) string
}

func ourKind(t websocket.MessageType) string {
	switch t {
	case websocket.MessageText:
		return "text"
	case websocket.MessageBinary:
		return "binary"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

func ourType(kind string) websocket.MessageType {
	if kind == "text" {
		return websocket.MessageText
	}
	return websocket.MessageBinary
}

func ourDial(ctx context.Context, url string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Options: websocket.Options{
		ReadLimit:    ourReadLimit,
		WriteTimeout: opTimeout,
		CloseTimeout: 10 * time.Second,
	}})
	return c, err
}

// runOurClientSuite runs every interop case with our Dial client against a peer server.
func runOurClientSuite(t *testing.T, ps peerServer) {
	for _, comp := range compressions {
		for _, mode := range modes {
			for _, kind := range kinds {
				for _, size := range sizes {
					name := msgCase(comp, mode, kind, size)
					t.Run(name, func(t *testing.T) {
						srvMode := "echo"
						if mode == "peer-frag" {
							srvMode = "stream"
						}
						ctx, cancel := opCtx()
						defer cancel()
						// chunk: the fragment size of the peer's streaming echo
						u := fmt.Sprintf("%s&chunk=%d", ps.url(srvMode, name), fragChunk(size))
						if comp == "deflate" {
							u += "&deflate=1" // the peer server accepts permessage-deflate
						}
						c, err := ourDial(ctx, u)
						if comp == "deflate" {
							if cf := ps.wire().frames(name); cf != nil {
								offer, answer := cf.extensions()
								if why := ps.badDeflateAnswer(offer, answer); why != "" {
									// RFC 7692 §5: a client MUST fail the connection
									// when the response does not accept its offer.
									var he *websocket.HandshakeError
									if !errors.As(err, &he) || he.Status != 101 {
										if c != nil {
											c.CloseNow()
										}
										t.Fatalf("offer %q, peer answer %q: %s; Dial: %v (%T), want a *HandshakeError with Status 101",
											offer, answer, why, err, err)
									}
									t.Logf("expected handshake failure: offer %q, peer answer %q: %s; Dial: %v", offer, answer, why, err)
									return
								}
							}
						}
						if err != nil {
							t.Fatalf("Dial: %v", err)
						}
						defer c.CloseNow()
						want := payload(kind, size)
						// Send while receiving: a streaming echo sends the message
						// back while it arrives, and TCP buffers are smaller than 16 MiB.
						sent := make(chan error, 1)
						go func() {
							if mode == "our-frag" {
								sent <- writeFragmented(ctx, c, ourType(kind), clone(want), fragChunk(size))
							} else {
								sent <- c.Write(ctx, ourType(kind), clone(want))
							}
						}()
						var gotKind string
						var got []byte
						if mode == "peer-frag" {
							// Fragmented by the peer: read it with the streaming API.
							typ, r, rerr := c.Reader(ctx)
							if rerr != nil {
								t.Fatalf("Reader: %v", rerr)
							}
							gotKind = ourKind(typ)
							got, err = io.ReadAll(r)
						} else {
							var m websocket.Message
							m, err = c.Read(ctx)
							gotKind, got = ourKind(m.Type), m.Data
						}
						if serr := <-sent; serr != nil {
							t.Fatalf("sending %s %d B: %v", kind, size, serr)
						}
						if err != nil {
							t.Fatalf("receiving the echo of %s %d B: %v", kind, size, err)
						}
						checkEcho(t, kind, want, gotKind, got)
						if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
							t.Errorf("Close(1000): %v", err)
						}
						checkWire(t, ps.wire(), name, comp, mode, size, false)
					})
				}
			}
		}
	}

	t.Run("ping-ours", func(t *testing.T) {
		ctx, cancel := opCtx()
		defer cancel()
		c, err := ourDial(ctx, ps.url("echo", "ping-ours"))
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.CloseNow()
		readDone := make(chan error, 1)
		go func() {
			m, err := c.Read(ctx)
			if err == nil && (m.Type != websocket.MessageText || string(m.Data) != "after-ping") {
				err = fmt.Errorf("read %s %q, want text \"after-ping\"", ourKind(m.Type), m.Data)
			}
			readDone <- err
		}()
		if err := c.Ping(ctx); err != nil {
			c.CloseNow()
			<-readDone
			t.Fatalf("Ping: %v", err)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte("after-ping")); err != nil {
			c.CloseNow()
			<-readDone
			t.Fatalf("Write after the ping: %v", err)
		}
		if err := <-readDone; err != nil {
			t.Fatalf("after the ping: %v", err)
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("Close(1000): %v", err)
		}
	})

	t.Run("ping-peer", func(t *testing.T) {
		ctx, cancel := opCtx()
		defer cancel()
		c, err := ourDial(ctx, ps.url("echo", "ping-peer"))
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, []byte("#cmd ping")); err != nil {
			t.Fatal(err)
		}
		m, err := c.Read(ctx)
		if err != nil || m.Type != websocket.MessageText || string(m.Data) != "#ok ping" {
			t.Fatalf("after the peer's ping: got %s %q, err %v; want text \"#ok ping\"", ourKind(m.Type), m.Data, err)
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("Close(1000): %v", err)
		}
	})

	for _, code := range closeCodes {
		name := fmt.Sprintf("close-ours-%d", code)
		t.Run(name, func(t *testing.T) {
			ctx, cancel := opCtx()
			defer cancel()
			c, err := ourDial(ctx, ps.url("echo", name))
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.CloseNow()
			cerr := c.Close(websocket.StatusCode(code), closeReason(code))
			o, ok := ps.observations().wait(t, name)
			if quirk := ps.rejectedCloseCode(code); quirk != "" {
				if ok && (o.err == nil || !strings.Contains(o.err.Error(), quirk)) {
					t.Errorf("peer server: %+v; want the peer's own rejection %q", o, quirk)
				}
				// The peer answers with a 1002 close frame: the handshake still completes.
				if cerr != nil {
					t.Logf("Close(%d) after the peer rejected the code: %v", code, cerr)
				}
				return
			}
			if cerr != nil {
				t.Errorf("Close(%d): %v", code, cerr)
			}
			if ok && (o.code != code || o.reason != closeReason(code)) {
				t.Errorf("peer server observed close %d %q (err %v); want %d %q", o.code, o.reason, o.err, code, closeReason(code))
			}
		})
	}

	for _, code := range closeCodes {
		name := fmt.Sprintf("close-peer-%d", code)
		t.Run(name, func(t *testing.T) {
			ctx, cancel := opCtx()
			defer cancel()
			c, err := ourDial(ctx, ps.url("echo", name))
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.CloseNow()
			if err := c.Write(ctx, websocket.MessageText, closeCmd(code)); err != nil {
				t.Fatal(err)
			}
			m, err := c.Read(ctx)
			if err == nil {
				t.Fatalf("got a %s message %q, want the close frame %d", ourKind(m.Type), m.Data, code)
			}
			checkOurCloseError(t, "our client", err, code, closeReason(code), true)
			o, ok := ps.observations().wait(t, name)
			if !ok {
				return
			}
			if quirk := ps.rejectedCloseCode(code); quirk != "" {
				if o.err == nil || !strings.Contains(o.err.Error(), quirk) {
					t.Errorf("peer server, our echo: %+v; want the peer's own rejection %q", o, quirk)
				}
			} else if o.err != nil || o.code != code {
				t.Errorf("peer server observed our echo: code %d, err %v (%s); want %d, nil", o.code, o.err, o.note, code)
			}
		})
	}
}

// writeFragmented sends p with our Writer, chunk bytes per Write call.
func writeFragmented(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, p []byte, chunk int) error {
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for len(p) > 0 {
		n := min(chunk, len(p))
		if _, err := w.Write(p[:n]); err != nil {
			w.Close()
			return err
		}
		p = p[n:]
	}
	return w.Close()
}
