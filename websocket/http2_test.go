package websocket_test

// WebSockets over HTTP/2 (RFC 8441): our server and our client over real
// net/http HTTP/2 connections (TLS with ALPN, and cleartext h2c), the
// client's choice of transport and its fallback to HTTP/1.1.
//
// net/http's HTTP/2 server takes an extended CONNECT only with
// GODEBUG=http2xconnect=1 in the environment when it starts; importing
// http2xconnect sets it for this test binary. The fallback tests need a
// server with it off, which in one process is impossible (net/http reads the
// setting once), so they start this test binary again as a server process
// with GODEBUG=http2xconnect=0 (TestHTTP2HelperProcess).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
	_ "github.com/duplexws/duplex/websocket/http2xconnect"
)

// h2Server is an HTTPS test server speaking HTTP/2 (and HTTP/1.1 to clients
// that offer no ALPN protocol) that counts its TCP connections and records
// the HTTP version of the last WebSocket request.
type h2Server struct {
	*httptest.Server
	conns      atomic.Int32
	protoMajor atomic.Int32
}

func startH2Server(t *testing.T, h http.Handler, enableHTTP2 bool) *h2Server {
	t.Helper()
	s := &h2Server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.protoMajor.Store(int32(r.ProtoMajor))
		h.ServeHTTP(w, r)
	}))
	s.EnableHTTP2 = enableHTTP2
	s.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *h2Server) wsURL(path string) string {
	return "wss" + strings.TrimPrefix(s.URL, "https") + path
}

// client returns an HTTP client that trusts the server and is willing to
// speak HTTP/2.
func (s *h2Server) client() *http.Client {
	tr := s.Client().Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true
	return s.Client()
}

// echoHandler echoes every message; endErr receives how each connection
// ended, when not nil.
func echoHandler(opts *websocket.AcceptOptions, endErr chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
			for {
				msg, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if msg.Type == websocket.MessageText {
					c.SendText(msg.Data)
				} else {
					c.SendBinary(msg.Data)
				}
				if err := c.Flush(); err != nil {
					return err
				}
			}
		})
		if endErr != nil {
			endErr <- err
		}
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialH2(t *testing.T, ctx context.Context, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response) {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

func echoOnce(t *testing.T, ctx context.Context, c *websocket.Conn, typ websocket.MessageType, p []byte) {
	t.Helper()
	if err := c.Write(ctx, typ, p); err != nil {
		t.Fatalf("write %d bytes: %v", len(p), err)
	}
	msg, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read the echo of %d bytes: %v", len(p), err)
	}
	if msg.Type != typ || !bytes.Equal(msg.Data, p) {
		t.Fatalf("echo of %d %v bytes: got %d %v bytes", len(p), typ, len(msg.Data), msg.Type)
	}
}

func TestHTTP2Echo(t *testing.T) {
	srv := startH2Server(t, echoHandler(nil, nil), true)
	ctx := testCtx(t)
	c, resp := dialH2(t, ctx, srv.wsURL("/echo"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("handshake response %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
	}
	if got := srv.protoMajor.Load(); got != 2 {
		t.Fatalf("the server saw HTTP/%d, want 2", got)
	}
	if c.RemoteAddr() == nil || c.RemoteAddr().String() != srv.Listener.Addr().String() {
		t.Errorf("RemoteAddr = %v, want %v", c.RemoteAddr(), srv.Listener.Addr())
	}
	for _, n := range []int{0, 1, 125, 126, 127, 4095, 4096, 16384, 65535, 65536, 1 << 20, 4 << 20} {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			echoOnce(t, ctx, c, typ, bytes.Repeat([]byte("é"), n/2))
		}
	}

	// A message in fragments through Writer, read back through Reader.
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("fragment ", 20000)
	if _, err := io.Copy(w, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	typ, r, err := c.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || typ != websocket.MessageText || string(got) != want {
		t.Fatalf("fragmented echo: %v %v %d bytes", err, typ, len(got))
	}

	// Buffered sends go out with one Flush.
	for i := range 100 {
		c.SendText(fmt.Appendf(nil, "m%d", i))
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		msg, err := c.Read(ctx)
		if err != nil || string(msg.Data) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: %q %v", i, msg.Data, err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestHTTP2AutoChoosesHTTP2(t *testing.T) {
	srv := startH2Server(t, echoHandler(nil, nil), true)
	ctx := testCtx(t)
	c, resp := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client()})
	if resp.ProtoMajor != 2 || srv.protoMajor.Load() != 2 {
		t.Fatalf("auto chose %s (server saw HTTP/%d), want HTTP/2", resp.Proto, srv.protoMajor.Load())
	}
	echoOnce(t, ctx, c, websocket.MessageText, []byte("hello"))
	c.Close(websocket.StatusNormalClosure, "")

	// HTTP1 forces the upgrade, on the same server.
	c, resp = dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP1})
	if resp.StatusCode != http.StatusSwitchingProtocols || srv.protoMajor.Load() != 1 {
		t.Fatalf("HTTP1 gave %s %s (server saw HTTP/%d)", resp.Proto, resp.Status, srv.protoMajor.Load())
	}
	echoOnce(t, ctx, c, websocket.MessageText, []byte("hello"))
	c.Close(websocket.StatusNormalClosure, "")
}

// An http.Client with a Timeout works for Dial: the Timeout would wrap the
// 101 response's body, which is the connection.
func TestDialWithClientTimeout(t *testing.T) {
	srv := startH2Server(t, echoHandler(nil, nil), false) // HTTP/1.1: the fallback runs over the dialed connection
	ctx := testCtx(t)
	client := srv.client()
	client.Timeout = time.Minute
	for _, v := range []websocket.HTTPVersion{websocket.HTTP1, websocket.HTTPAuto} {
		c, resp := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: client, HTTPVersion: v})
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%v: %s", v, resp.Status)
		}
		echoOnce(t, ctx, c, websocket.MessageText, []byte("hi"))
		c.Close(websocket.StatusNormalClosure, "")
	}
}

func TestHTTP2Ping(t *testing.T) {
	srv := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			read := make(chan error, 1)
			go func() {
				for {
					if _, err := c.Read(ctx); err != nil {
						read <- err
						return
					}
				}
			}()
			if err := c.Ping(ctx); err != nil {
				return err
			}
			if err := c.Write(ctx, websocket.MessageText, []byte("server ping answered")); err != nil {
				return err
			}
			return <-read
		})
	}), true)
	ctx := testCtx(t)
	c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
	msg, err := c.Read(ctx) // answers the server's ping
	if err != nil || string(msg.Data) != "server ping answered" {
		t.Fatalf("Read: %q %v", msg.Data, err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx)
		read <- err
	}()
	for range 3 {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("client Ping: %v", err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	if err := <-read; !errors.Is(err, websocket.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
}

func TestHTTP2CloseCodes(t *testing.T) {
	t.Run("client closes", func(t *testing.T) {
		ended := make(chan error, 1)
		var handlerErr error
		srv := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
				_, err := c.Read(ctx)
				handlerErr = err
				return err
			})
			ended <- handlerErr
		}), true)
		ctx := testCtx(t)
		c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
		if err := c.Close(4001, "client bye"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		var ce *websocket.CloseError
		if err := <-ended; !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "client bye" || !ce.Remote {
			t.Fatalf("the server read %v, want the peer's close 4001 \"client bye\"", err)
		}
	})
	t.Run("server closes", func(t *testing.T) {
		srv := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
				return &websocket.CloseError{Code: 4002, Reason: "server bye"}
			})
		}), true)
		ctx := testCtx(t)
		c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
		_, err := c.Read(ctx)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4002 || ce.Reason != "server bye" || !ce.Remote {
			t.Fatalf("the client read %v, want the peer's close 4002 \"server bye\"", err)
		}
	})
	t.Run("stream ends cleanly", func(t *testing.T) {
		// After a closing handshake the HTTP/2 connection stays healthy and
		// carries the next WebSocket.
		srv := startH2Server(t, echoHandler(nil, nil), true)
		ctx := testCtx(t)
		opts := &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2}
		for i := range 5 {
			c, _ := dialH2(t, ctx, srv.wsURL("/"), opts)
			echoOnce(t, ctx, c, websocket.MessageText, fmt.Appendf(nil, "round %d", i))
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatalf("round %d: Close: %v", i, err)
			}
		}
		if n := srv.conns.Load(); n != 1 {
			t.Fatalf("5 WebSockets one after another used %d TCP connections, want 1", n)
		}
	})
}

func TestHTTP2ReadLimit(t *testing.T) {
	ended := make(chan error, 1)
	srv := startH2Server(t, echoHandler(&websocket.AcceptOptions{Options: websocket.Options{ReadLimit: 1000}}, ended), true)
	ctx := testCtx(t)
	c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
	echoOnce(t, ctx, c, websocket.MessageBinary, make([]byte, 1000))
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(ctx)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusMessageTooBig || !ce.Remote {
		t.Fatalf("client read %v, want the server's close 1009", err)
	}
	if err := <-ended; !errors.As(err, &ce) || ce.Code != websocket.StatusMessageTooBig {
		t.Fatalf("server ended with %v, want 1009", err)
	}
}

func TestHTTP2ManyOnOneConnection(t *testing.T) {
	const n = 100
	srv := startH2Server(t, echoHandler(nil, nil), true)
	ctx := testCtx(t)
	opts := &websocket.DialOptions{HTTPClient: srv.client()}
	conns := make([]*websocket.Conn, n)
	conns[0], _ = dialH2(t, ctx, srv.wsURL("/"), opts) // opens the HTTP/2 connection
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		wg.Go(func() {
			c, resp, err := websocket.Dial(ctx, srv.wsURL("/"), opts)
			if err != nil {
				errs <- err
				return
			}
			if resp.ProtoMajor != 2 {
				errs <- fmt.Errorf("WebSocket %d over %s", i, resp.Proto)
			}
			conns[i] = c
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, c := range conns {
		wg.Go(func() {
			p := fmt.Appendf(nil, "socket %d", i)
			if err := c.Write(ctx, websocket.MessageText, p); err != nil {
				t.Error(err)
				return
			}
			msg, err := c.Read(ctx)
			if err != nil || !bytes.Equal(msg.Data, p) {
				t.Errorf("socket %d: %q %v", i, msg.Data, err)
			}
		})
	}
	wg.Wait()
	if got := srv.conns.Load(); got != 1 {
		t.Fatalf("%d WebSockets used %d TCP connections, want 1", n, got)
	}
	for _, c := range conns {
		wg.Go(func() { c.Close(websocket.StatusNormalClosure, "") })
	}
	wg.Wait()
}

// A connection at the server's stream limit takes no more WebSockets: Dial
// opens another connection instead of waiting for a stream.
func TestHTTP2MoreThanMaxConcurrentStreams(t *testing.T) {
	srv := startH2Server(t, echoHandler(nil, nil), true)
	srv.Config.HTTP2.MaxConcurrentStreams = 10
	ctx := testCtx(t)
	opts := &websocket.DialOptions{HTTPClient: srv.client()}
	for i := range 25 {
		c, resp := dialH2(t, ctx, srv.wsURL("/"), opts)
		if resp.ProtoMajor != 2 {
			t.Fatalf("WebSocket %d over %s", i, resp.Proto)
		}
		echoOnce(t, ctx, c, websocket.MessageText, []byte("hi"))
	}
	if got := srv.conns.Load(); got != 3 {
		t.Fatalf("25 WebSockets at 10 streams per connection used %d connections, want 3", got)
	}
}

// A context that ends while no message is coming ends the Read only: the
// stream goes on, on both sides.
func TestHTTP2ReadCancelBetweenMessages(t *testing.T) {
	srv := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := c.Read(short)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("server's short read: %v", err)
			}
			if err := c.Write(ctx, websocket.MessageText, []byte("ready")); err != nil {
				return err
			}
			msg, err := c.Read(ctx)
			if err != nil {
				return err
			}
			return c.Write(ctx, websocket.MessageText, msg.Data)
		})
	}), true)
	ctx := testCtx(t)
	c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
	msg, err := c.Read(ctx)
	if err != nil || string(msg.Data) != "ready" {
		t.Fatalf("first read: %q %v", msg.Data, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = c.Read(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client's short read: %v", err)
	}
	echoOnce(t, ctx, c, websocket.MessageText, []byte("still here"))
}

// A write blocked by HTTP/2 flow control (the peer reads nothing) ends at
// the WriteTimeout and fails the connection.
func TestHTTP2WriteTimeout(t *testing.T) {
	ended := make(chan error, 1)
	srv := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ended <- websocket.Open(w, r, &websocket.AcceptOptions{Options: websocket.Options{WriteTimeout: 200 * time.Millisecond}},
			func(ctx context.Context, c *websocket.Conn) error {
				p := make([]byte, 64<<10)
				for {
					c.SendBinary(p)
					if err := c.Flush(); err != nil {
						return err
					}
				}
			})
	}), true)
	ctx := testCtx(t)
	c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
	err := <-ended
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server's flood ended with %v, want a write timeout", err)
	}
	// The stream was reset: the client's reads end.
	for {
		if _, err := c.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("the client's read did not end")
			}
			break
		}
	}
}

// The client's side of the same: a server that reads nothing.
func TestHTTP2ClientWriteTimeout(t *testing.T) {
	ended := make(chan error, 1)
	flooded := make(chan struct{})
	srv := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ended <- websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			<-flooded // reads nothing until then: the stream's window fills
			for {
				if _, err := c.Read(ctx); err != nil {
					return err
				}
			}
		})
	}), true)
	ctx := testCtx(t)
	c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{
		HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2,
		Options: websocket.Options{WriteTimeout: 200 * time.Millisecond},
	})
	p := make([]byte, 64<<10)
	var err error
	for err == nil {
		c.SendBinary(p)
		err = c.Flush()
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client's flood ended with %v, want a write timeout", err)
	}
	close(flooded)
	// The stream was reset: the server's reads end, and its handler.
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("the server's handler did not end")
	}
}

func TestHTTP2SubprotocolCompressionOrigin(t *testing.T) {
	srv := startH2Server(t, echoHandler(&websocket.AcceptOptions{Subprotocols: []string{"chat.v2", "chat.v1"}}, nil), true)
	ctx := testCtx(t)
	h := http.Header{"Origin": {srv.URL}}
	c, resp := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{
		HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2, Header: h, Subprotocols: []string{"chat.v1", "chat.v2"},
	})
	if c.Subprotocol() != "chat.v2" {
		t.Fatalf("subprotocol %q, want chat.v2", c.Subprotocol())
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("Sec-WebSocket-Extensions %q, want permessage-deflate", ext)
	}
	echoOnce(t, ctx, c, websocket.MessageText, bytes.Repeat([]byte("compressible "), 1000))
	c.Close(websocket.StatusNormalClosure, "")

	// A foreign Origin is refused over HTTP/2 as over HTTP/1.1.
	h = http.Header{"Origin": {"https://evil.example"}}
	_, resp, err := websocket.Dial(ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2, Header: h})
	var herr *websocket.HandshakeError
	if !errors.As(err, &herr) || herr.Status != http.StatusForbidden || resp == nil {
		t.Fatalf("Dial with a foreign Origin: %v, want a 403 HandshakeError", err)
	}
	if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), "not allowed") {
		t.Fatalf("403 body %q", body)
	}
}

// Cleartext HTTP/2 (h2c, prior knowledge) when forced; auto stays on
// HTTP/1.1 for ws://.
func TestHTTP2Cleartext(t *testing.T) {
	var protoMajor atomic.Int32
	h := echoHandler(nil, nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protoMajor.Store(int32(r.ProtoMajor))
		h.ServeHTTP(w, r)
	}))
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = p
	srv.Start()
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx := testCtx(t)
	c, resp := dialH2(t, ctx, url, &websocket.DialOptions{HTTPVersion: websocket.HTTP2})
	if resp.ProtoMajor != 2 || protoMajor.Load() != 2 {
		t.Fatalf("forced HTTP/2 over ws:// used %s", resp.Proto)
	}
	echoOnce(t, ctx, c, websocket.MessageBinary, make([]byte, 100000))
	c.Close(websocket.StatusNormalClosure, "")
	c, resp = dialH2(t, ctx, url, nil)
	if resp.ProtoMajor != 1 || protoMajor.Load() != 1 {
		t.Fatalf("auto over ws:// used %s", resp.Proto)
	}
	echoOnce(t, ctx, c, websocket.MessageText, []byte("h1"))
	c.Close(websocket.StatusNormalClosure, "")
}

// A TLS server without HTTP/2: the handshake goes over HTTP/1.1, on the
// connection already dialed.
func TestHTTP2FallbackWhenALPNChoosesHTTP1(t *testing.T) {
	srv := startH2Server(t, echoHandler(nil, nil), false)
	ctx := testCtx(t)
	client := srv.client() // offers h2 in ALPN; the server picks http/1.1
	c, resp := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: client})
	if resp.StatusCode != http.StatusSwitchingProtocols || srv.protoMajor.Load() != 1 {
		t.Fatalf("got %s %s, want the HTTP/1.1 upgrade", resp.Proto, resp.Status)
	}
	echoOnce(t, ctx, c, websocket.MessageText, []byte("over HTTP/1.1"))
	c.Close(websocket.StatusNormalClosure, "")
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("the fallback used %d TCP connections, want the 1 dialed for HTTP/2", n)
	}

	_, _, err := websocket.Dial(ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: client, HTTPVersion: websocket.HTTP2})
	if err == nil || !strings.Contains(err.Error(), "did not negotiate HTTP/2") {
		t.Fatalf("forced HTTP/2 against an HTTP/1.1 server: %v", err)
	}
}

// A Go server run without GODEBUG=http2xconnect=1 speaks HTTP/2 but does
// not allow extended CONNECT: the client falls back to HTTP/1.1.
func TestHTTP2FallbackWithoutExtendedConnect(t *testing.T) {
	url, client := startHelper(t, "echo")
	ctx := testCtx(t)
	for i := range 2 { // the second Dial learns it from the pooled connection
		c, resp := dialH2(t, ctx, url, &websocket.DialOptions{HTTPClient: client})
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("dial %d: %s %s, want the HTTP/1.1 upgrade", i, resp.Proto, resp.Status)
		}
		msg, err := c.Read(ctx)
		if err != nil || string(msg.Data) != "HTTP/1.1" {
			t.Fatalf("dial %d: the server saw %q (%v), want HTTP/1.1", i, msg.Data, err)
		}
		echoOnce(t, ctx, c, websocket.MessageText, []byte("fell back"))
		c.Close(websocket.StatusNormalClosure, "")
	}

	_, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, HTTPVersion: websocket.HTTP2})
	if err == nil || !strings.Contains(err.Error(), "SETTINGS_ENABLE_CONNECT_PROTOCOL") {
		t.Fatalf("forced HTTP/2 without extended CONNECT: %v", err)
	}

	// An HTTP/2 request that reaches Accept there says what to turn on.
	resp, err := client.Get(strings.Replace(url, "wss://", "https://", 1))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "GODEBUG=http2xconnect=1") {
		t.Fatalf("GET over %s: %s %q", resp.Proto, resp.Status, body)
	}
}

// When neither HTTP/2 nor HTTP/1.1 can carry the WebSocket, Dial fails with
// a HandshakeError that names both reasons, and does not hang.
func TestHTTP2RefusedWhenNeitherWorks(t *testing.T) {
	t.Run("HTTP/2 only, no extended CONNECT", func(t *testing.T) {
		url, client := startHelper(t, "h2only")
		_, _, err := websocket.Dial(testCtx(t), url, &websocket.DialOptions{HTTPClient: client})
		var herr *websocket.HandshakeError
		if !errors.As(err, &herr) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "HTTP/2 was tried first") {
			t.Fatalf("Dial: %v", err)
		}
		t.Log(err)
	})
	t.Run("not a WebSocket endpoint", func(t *testing.T) {
		url, client := startHelper(t, "plain")
		_, resp, err := websocket.Dial(testCtx(t), url, &websocket.DialOptions{HTTPClient: client})
		var herr *websocket.HandshakeError
		if !errors.As(err, &herr) || herr.Status != http.StatusNotFound || resp == nil || !strings.Contains(err.Error(), "HTTP/2 was tried first") {
			t.Fatalf("Dial: %v", err)
		}
		t.Log(err)
	})
	t.Run("extended CONNECT refused, HTTP/1.1 refused", func(t *testing.T) {
		srv := startH2Server(t, http.NotFoundHandler(), true)
		_, resp, err := websocket.Dial(testCtx(t), srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client()})
		var herr *websocket.HandshakeError
		if !errors.As(err, &herr) || herr.Status != http.StatusNotFound || resp == nil || resp.ProtoMajor != 1 || !strings.Contains(err.Error(), "HTTP/2 was tried first") {
			t.Fatalf("Dial: %v", err)
		}
		t.Log(err)
	})
}

// startHelper runs TestHTTP2HelperProcess in a new process of this test
// binary, with extended CONNECT off, and returns its wss:// URL and a client
// that trusts it.
func startHelper(t *testing.T, mode string) (string, *http.Client) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHTTP2HelperProcess$", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GODEBUG=http2xconnect=0", "DUPLEX_HTTP2_HELPER="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the helper serves until its stdin closes
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper process: %v", err)
	}
	url, certB64, ok := strings.Cut(strings.TrimSpace(line), " ")
	der, err := base64.StdEncoding.DecodeString(certB64)
	if !ok || err != nil {
		t.Fatalf("helper process said %q", line)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return "wss" + strings.TrimPrefix(url, "https") + "/", &http.Client{Transport: tr}
}

// TestHTTP2HelperProcess is the server of startHelper; it does nothing in an
// ordinary run. Modes: "echo" (HTTP/2 and HTTP/1.1, a WebSocket echo that
// first sends the request's protocol), "h2only" (the echo, HTTP/2 only),
// "plain" (HTTP/2 and HTTP/1.1, 404 for everything).
func TestHTTP2HelperProcess(t *testing.T) {
	mode := os.Getenv("DUPLEX_HTTP2_HELPER")
	if mode == "" {
		t.Skip("the server process of the HTTP/2 fallback tests")
	}
	h := http.NotFoundHandler()
	if mode != "plain" {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
				if err := c.Write(ctx, websocket.MessageText, []byte(r.Proto)); err != nil {
					return err
				}
				return echoMessages(ctx, c)
			})
		})
	}
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	if mode == "h2only" {
		p := new(http.Protocols)
		p.SetHTTP2(true)
		srv.Config.Protocols = p
	}
	srv.StartTLS()
	defer srv.Close()
	fmt.Printf("%s %s\n", srv.URL, base64.StdEncoding.EncodeToString(srv.Certificate().Raw))
	io.Copy(io.Discard, os.Stdin)
}
