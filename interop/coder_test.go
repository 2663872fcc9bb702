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
	"sync"
	"testing"
	"time"

	cws "github.com/coder/websocket"
)

// TestCoderClient: coder/websocket as the client of our server.
func TestCoderClient(t *testing.T) { runGoClientSuite(t, coderClient{}) }

// TestCoderServer: our Dial client against a coder/websocket echo server.
func TestCoderServer(t *testing.T) { runOurClientSuite(t, newCoderServer(t)) }

type coderClient struct{}

func (coderClient) rejectedCloseCode(int) string { return "" }

func (coderClient) dial(ctx context.Context, url string, _ int, deflate bool) (clientConn, error) {
	opts := &cws.DialOptions{}
	if deflate {
		opts.CompressionMode = cws.CompressionContextTakeover
	}
	c, _, err := cws.Dial(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(peerReadLimit)
	return &coderConn{c: c}, nil
}

type coderConn struct{ c *cws.Conn }

func coderType(kind string) cws.MessageType {
	if kind == "text" {
		return cws.MessageText
	}
	return cws.MessageBinary
}

func coderKind(mt cws.MessageType) string {
	switch mt {
	case cws.MessageText:
		return "text"
	case cws.MessageBinary:
		return "binary"
	}
	return fmt.Sprintf("type(%d)", int(mt))
}

// send: coder's Conn.Write sends the message as one frame.
func (k *coderConn) send(ctx context.Context, kind string, p []byte) error {
	return k.c.Write(ctx, coderType(kind), p)
}

// sendFrag: coder's Writer sends one frame per Write call, then an empty final frame.
func (k *coderConn) sendFrag(ctx context.Context, kind string, p []byte, chunk int) error {
	return coderWriteChunks(ctx, k.c, coderType(kind), p, chunk)
}

func coderWriteChunks(ctx context.Context, c *cws.Conn, typ cws.MessageType, p []byte, chunk int) error {
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

func (k *coderConn) recv(ctx context.Context) (string, []byte, error) {
	mt, p, err := k.c.Read(ctx)
	return coderKind(mt), p, err
}

func (k *coderConn) closeStatus(err error) (int, string, bool) {
	var ce cws.CloseError
	if errors.As(err, &ce) {
		return int(ce.Code), ce.Reason, true
	}
	return 0, "", false
}

// ping: coder's Ping sends a payload of its own and returns only when the
// pong carrying that same payload arrives (processed by a concurrent Read).
func (k *coderConn) ping(ctx context.Context) error {
	readDone := make(chan error, 1)
	go func() {
		mt, p, err := k.c.Read(ctx)
		if err == nil && (mt != cws.MessageText || string(p) != "after-ping") {
			err = fmt.Errorf("read %s %q, want text \"after-ping\"", coderKind(mt), p)
		}
		readDone <- err
	}()
	fail := func(err error) error {
		k.c.CloseNow()
		<-readDone
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := k.c.Ping(pctx); err != nil {
		return fail(err)
	}
	if err := k.c.Write(ctx, cws.MessageText, []byte("after-ping")); err != nil {
		return fail(err)
	}
	return <-readDone
}

// closeHandshake: coder's Close returns nil only when the peer's close frame
// carries the same code (closeHandshake compares CloseStatus(err) != code).
func (k *coderConn) closeHandshake(code int, reason string) (int, error) {
	if err := k.c.Close(cws.StatusCode(code), reason); err != nil {
		return 0, err
	}
	return code, nil
}

func (k *coderConn) closeNow() { k.c.CloseNow() }

// coderServer is a coder/websocket echo server with the protocol of ourServer.
type coderServer struct {
	*httptest.Server
	obs obsStore
	st  *wireStats
}

func newCoderServer(t *testing.T) *coderServer {
	s := &coderServer{}
	s.Server, s.st = newSniffServer(t, http.HandlerFunc(s.serve))
	return s
}

func (s *coderServer) url(mode, name string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/?mode=" + mode + "&case=" + url.QueryEscape(name)
}

func (s *coderServer) observations() *obsStore { return &s.obs }

func (s *coderServer) wire() *wireStats { return s.st }

func (s *coderServer) rejectedCloseCode(int) string { return "" }

func (s *coderServer) badDeflateAnswer(string, string) string { return "" }

func (s *coderServer) serve(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("case")
	stream := r.URL.Query().Get("mode") == "stream"
	chunk := queryChunk(r)
	opts := &cws.AcceptOptions{}
	if r.URL.Query().Get("deflate") == "1" {
		opts.CompressionMode = cws.CompressionContextTakeover
	}
	c, err := cws.Accept(w, r, opts)
	if err != nil {
		s.obs.put(name, obs{err: err})
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(peerReadLimit)
	ctx, cancel := context.WithTimeout(r.Context(), connTimeout)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	var o obs
	for err == nil {
		if stream {
			err = coderStreamOne(ctx, c, chunk)
			continue
		}
		var mt cws.MessageType
		var p []byte
		mt, p, err = c.Read(ctx)
		if err != nil {
			break
		}
		cmd, code, reason, ok := parseCmd(p)
		switch {
		case mt != cws.MessageText || !ok:
			err = c.Write(ctx, mt, p)
		case cmd == "ping":
			wg.Add(1)
			go func() { // Ping needs the concurrent Read of the loop
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				reply := "#ok ping"
				if err := c.Ping(pctx); err != nil {
					reply = "#err ping: " + err.Error()
				}
				_ = c.Write(ctx, cws.MessageText, []byte(reply))
			}()
		case cmd == "close":
			// Close returns nil only if our echo carries the same code.
			o.note = fmt.Sprintf("coder Close(%d, %q)", code, reason)
			if err = c.Close(cws.StatusCode(code), reason); err == nil {
				o.code = code
				s.obs.put(name, o)
				return
			}
		}
	}
	o.err = err
	var ce cws.CloseError
	if errors.As(err, &ce) {
		o.code, o.reason = int(ce.Code), ce.Reason
	}
	s.obs.put(name, o)
}

// coderStreamOne echoes one message with coder's Writer: one frame per chunk.
func coderStreamOne(ctx context.Context, c *cws.Conn, chunk int) error {
	mt, r, err := c.Reader(ctx)
	if err != nil {
		return err
	}
	w, err := c.Writer(ctx, mt)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, make([]byte, chunk)); err != nil {
		return err
	}
	return w.Close()
}
