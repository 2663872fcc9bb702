package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

// gorilla/websocket v1.5.3 refuses to receive close code 1014 (Bad Gateway,
// registered by IANA and accepted by RFC 6455 §7.4.2 as a defined code): its
// validReceivedCloseCodes table stops at 1013, so a received 1014 close frame
// makes it fail with "websocket: bad close code 1014" (and answer 1002)
// instead of reporting a CloseError. Only that expectation is adapted.
func gorillaRejectedCloseCode(code int) string {
	if code == 1014 {
		return "bad close code 1014"
	}
	return ""
}

// gorilla/websocket v1.5.3's server (Upgrader.EnableCompression) answers
// any permessage-deflate offer with "permessage-deflate;
// server_no_context_takeover; client_no_context_takeover", ignoring the
// offer's parameters. RFC 7692 §7.1.2.1: "A server accepts an extension
// negotiation offer with [server_max_window_bits] by including the
// server_max_window_bits extension parameter in the extension negotiation
// response"; it declines it by not accepting the offer. So when every offer
// carries server_max_window_bits, gorilla's answer accepts none of them and
// the client must fail the connection (RFC 7692 §5). Only that expectation is
// adapted: with an offer gorilla answers validly, the usual checks apply.
func gorillaBadDeflateAnswer(offer, answer string) string {
	if !strings.Contains(answer, "permessage-deflate") || strings.Contains(answer, "server_max_window_bits") {
		return ""
	}
	for _, o := range strings.Split(offer, ",") {
		if strings.Contains(o, "permessage-deflate") && !strings.Contains(o, "server_max_window_bits") {
			return "" // an offer gorilla's answer can accept
		}
	}
	return "gorilla accepted permessage-deflate without the server_max_window_bits every offer asked for"
}

// TestGorillaClient: gorilla/websocket as the client of our server.
func TestGorillaClient(t *testing.T) { runGoClientSuite(t, gorillaClient{}) }

// TestGorillaServer: our Dial client against a gorilla/websocket echo server.
func TestGorillaServer(t *testing.T) { runOurClientSuite(t, newGorillaServer(t)) }

type gorillaClient struct{}

func (gorillaClient) rejectedCloseCode(code int) string { return gorillaRejectedCloseCode(code) }

func (gorillaClient) dial(ctx context.Context, url string, chunk int, deflate bool) (clientConn, error) {
	// A gorilla client flushes a frame each time its write buffer is full:
	// the buffer size is the fragment size. chunk == 0: one frame per message.
	wb := maxMessage + 64
	if chunk > 0 {
		wb = chunk
	}
	// EnableCompression: offers permessage-deflate (gorilla only does it
	// without context takeover).
	d := &gws.Dialer{HandshakeTimeout: opTimeout, ReadBufferSize: 4096, WriteBufferSize: wb, EnableCompression: deflate}
	c, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(peerReadLimit)
	return &gorillaConn{c: c}, nil
}

type gorillaConn struct{ c *gws.Conn }

func gorillaType(kind string) int {
	if kind == "text" {
		return gws.TextMessage
	}
	return gws.BinaryMessage
}

func gorillaKind(mt int) string {
	switch mt {
	case gws.TextMessage:
		return "text"
	case gws.BinaryMessage:
		return "binary"
	}
	return fmt.Sprintf("type(%d)", mt)
}

func deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(opTimeout)
}

func (g *gorillaConn) send(ctx context.Context, kind string, p []byte) error {
	g.c.SetWriteDeadline(deadline(ctx))
	return g.c.WriteMessage(gorillaType(kind), p)
}

func (g *gorillaConn) sendFrag(ctx context.Context, kind string, p []byte, chunk int) error {
	g.c.SetWriteDeadline(deadline(ctx))
	w, err := g.c.NextWriter(gorillaType(kind))
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

func (g *gorillaConn) recv(ctx context.Context) (string, []byte, error) {
	g.c.SetReadDeadline(deadline(ctx))
	mt, p, err := g.c.ReadMessage()
	return gorillaKind(mt), p, err
}

func (g *gorillaConn) closeStatus(err error) (int, string, bool) {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text, true
	}
	return 0, "", false
}

func (g *gorillaConn) ping(ctx context.Context) error {
	const payload = "gorilla-ping \x00\xff"
	pong := make(chan string, 1)
	g.c.SetPongHandler(func(s string) error {
		select {
		case pong <- s:
		default:
		}
		return nil
	})
	g.c.SetReadDeadline(deadline(ctx))
	readDone := make(chan error, 1)
	go func() { // pongs are processed by the reading goroutine
		mt, p, err := g.c.ReadMessage()
		if err == nil && (mt != gws.TextMessage || string(p) != "after-ping") {
			err = fmt.Errorf("read %s %q, want text \"after-ping\"", gorillaKind(mt), p)
		}
		readDone <- err
	}()
	fail := func(err error) error {
		g.c.Close()
		<-readDone
		return err
	}
	if err := g.c.WriteControl(gws.PingMessage, []byte(payload), deadline(ctx)); err != nil {
		return fail(err)
	}
	select {
	case got := <-pong:
		if got != payload {
			return fail(fmt.Errorf("pong payload %q, want %q", got, payload))
		}
	case err := <-readDone:
		return fmt.Errorf("read ended before the pong: %v", err)
	case <-ctx.Done():
		return fail(fmt.Errorf("no pong: %w", ctx.Err()))
	}
	g.c.SetWriteDeadline(deadline(ctx))
	if err := g.c.WriteMessage(gws.TextMessage, []byte("after-ping")); err != nil {
		return fail(err)
	}
	return <-readDone
}

func (g *gorillaConn) closeHandshake(code int, reason string) (int, error) {
	dl := time.Now().Add(opTimeout)
	if err := g.c.WriteControl(gws.CloseMessage, gws.FormatCloseMessage(code, reason), dl); err != nil {
		return 0, err
	}
	g.c.SetReadDeadline(dl)
	for {
		_, _, err := g.c.ReadMessage()
		if err == nil {
			continue // data sent before the close frame
		}
		var ce *gws.CloseError
		if errors.As(err, &ce) {
			return ce.Code, nil
		}
		return 0, err
	}
}

func (g *gorillaConn) closeNow() { g.c.Close() }

// gorillaServer is a gorilla/websocket echo server with the protocol of ourServer.
type gorillaServer struct {
	*httptest.Server
	obs obsStore
	st  *wireStats
}

func newGorillaServer(t *testing.T) *gorillaServer {
	s := &gorillaServer{}
	s.Server, s.st = newSniffServer(t, http.HandlerFunc(s.serve))
	return s
}

func (s *gorillaServer) url(mode, name string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/?mode=" + mode + "&case=" + url.QueryEscape(name)
}

func (s *gorillaServer) observations() *obsStore { return &s.obs }

func (s *gorillaServer) wire() *wireStats { return s.st }

func (s *gorillaServer) rejectedCloseCode(code int) string { return gorillaRejectedCloseCode(code) }

func (s *gorillaServer) badDeflateAnswer(offer, answer string) string {
	return gorillaBadDeflateAnswer(offer, answer)
}

func (s *gorillaServer) serve(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("case")
	stream := r.URL.Query().Get("mode") == "stream"
	chunk := queryChunk(r)
	// Server side: WriteMessage sends one frame whatever the buffer size; a
	// NextWriter flushes a frame each time its buffer is full: the streaming
	// echo sends fragments of chunk bytes.
	up := gws.Upgrader{ReadBufferSize: 4096, WriteBufferSize: chunk, EnableCompression: r.URL.Query().Get("deflate") == "1"}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		s.obs.put(name, obs{err: err})
		return
	}
	defer c.Close()
	c.SetReadLimit(peerReadLimit)
	dl := time.Now().Add(connTimeout)
	c.SetReadDeadline(dl)
	c.SetWriteDeadline(dl)
	const pingPayload = "gorilla-server-ping \x00\xff"
	c.SetPongHandler(func(got string) error {
		reply := "#ok ping"
		if got != pingPayload {
			reply = fmt.Sprintf("#err ping: pong payload %q, want %q", got, pingPayload)
		}
		return c.WriteMessage(gws.TextMessage, []byte(reply))
	})
	var o obs
	for err == nil {
		if stream {
			err = gorillaStreamOne(c, chunk)
			continue
		}
		var mt int
		var p []byte
		mt, p, err = c.ReadMessage()
		if err != nil {
			break
		}
		cmd, code, reason, ok := parseCmd(p)
		switch {
		case mt != gws.TextMessage || !ok:
			err = c.WriteMessage(mt, p)
		case cmd == "ping":
			err = c.WriteControl(gws.PingMessage, []byte(pingPayload), dl)
		case cmd == "close":
			o.note = fmt.Sprintf("sent close %d %q, then read the echo", code, reason)
			err = c.WriteControl(gws.CloseMessage, gws.FormatCloseMessage(code, reason), dl)
			for err == nil { // read up to the echo
				_, _, err = c.ReadMessage()
			}
			var ce *gws.CloseError
			if errors.As(err, &ce) { // the echo: the handshake completed
				o.code, o.reason = ce.Code, ce.Text
				s.obs.put(name, o)
				return
			}
		}
	}
	o.err = err
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		o.code, o.reason = ce.Code, ce.Text
	}
	s.obs.put(name, o)
}

func gorillaStreamOne(c *gws.Conn, chunk int) error {
	mt, r, err := c.NextReader()
	if err != nil {
		return err
	}
	w, err := c.NextWriter(mt)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, make([]byte, chunk)); err != nil {
		return err
	}
	return w.Close()
}
