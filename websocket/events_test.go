package websocket_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The tests of AcceptEvents' behaviour that the conformance suite (which
// runs every server case in the events mode too, "server-events/...") does
// not show: ordering under a slow callback, Shutdown, the errors of Read.

// eventsServer serves AcceptEvents with ev and returns the ws:// URL; the
// errors OnClose gets are sent on the returned channel.
func eventsServer(t *testing.T, opts *websocket.AcceptOptions, onMessage func(c *websocket.Conn, msg websocket.Message) error) (string, <-chan error) {
	t.Helper()
	closed := make(chan error, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.AcceptEvents(w, r, opts, websocket.Events{
			OnMessage: onMessage,
			OnClose:   func(c *websocket.Conn, err error) { closed <- err },
		})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), closed
}

// echoEvent writes every message back as it came.
func echoEvent(c *websocket.Conn, msg websocket.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Write(ctx, msg.Type, msg.Data)
}

func TestEventsEcho(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, closed := eventsServer(t, nil, echoEvent)
	c := wsDial(t, url, nil)
	for i, size := range []int{0, 1, 125, 126, 8 << 10, 100 << 10} {
		want := bytes.Repeat([]byte{byte('a' + i)}, size)
		if err := c.Write(ctx, websocket.MessageBinary, want); err != nil {
			t.Fatal(err)
		}
		msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(msg.Data, want) {
			t.Fatalf("echo of %d bytes came back as %d bytes", size, len(msg.Data))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	err := recv(t, ctx, closed)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || !ce.Remote || !errors.Is(err, io.EOF) {
		t.Fatalf("OnClose got %v; want the peer's 1000", err)
	}
}

// TestEventsReadRefused: the messages of an events connection go to its
// callbacks; Read, Reader and ReadInto say so rather than competing.
func TestEventsReadRefused(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	conns := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.AcceptEvents(w, r, nil, websocket.Events{})
		if err == nil {
			conns <- c
		}
	}))
	defer srv.Close()
	client := wsDial(t, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	c := recv(t, ctx, conns)
	defer c.CloseNow()
	if _, err := c.Read(ctx); err == nil || !strings.Contains(err.Error(), "Events") {
		t.Errorf("Read on an events connection: %v; want an error naming Events", err)
	}
	if _, _, err := c.Reader(ctx); err == nil {
		t.Error("Reader on an events connection did not fail")
	}
	if _, err := c.ReadInto(ctx, nil); err == nil {
		t.Error("ReadInto on an events connection did not fail")
	}
	client.CloseNow()
}

// TestEventsSmallSegments: a message that arrives a few bytes per TCP
// segment is delivered whole, once, as its last byte arrives.
func TestEventsSmallSegments(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	got := make(chan string, 4)
	url, closed := eventsServer(t, nil, func(c *websocket.Conn, msg websocket.Message) error {
		got <- string(msg.Data)
		return nil
	})
	p := dialRawClient(t, url)
	want := strings.Repeat("segment ", 40)
	frame := p.text(want, true)
	for i := 0; i < len(frame); i += 3 {
		p.write(frame[i:min(i+3, len(frame))])
		time.Sleep(time.Millisecond) // each write a segment of its own, read on its own
	}
	if m := recv(t, ctx, got); m != want {
		t.Fatalf("got %q; want %q", m, want)
	}
	p.conn.Close()
	recv(t, ctx, closed)
	select {
	case m := <-got:
		t.Fatalf("a second message %q was delivered", m)
	default:
	}
}

// dialRawClient does the opening handshake over a plain TCP connection,
// for tests that write frames by hand.
func dialRawClient(t *testing.T, url string) *peer {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	conn, err := net.DialTimeout("tcp", host, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := newRawClient(t, conn)
	p.clientHandshake(host)
	return p
}

// TestEventsSlowCallback: a callback that takes its time holds up its own
// connection only.
func TestEventsSlowCallback(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	release := make(chan struct{})
	url, closed := eventsServer(t, nil, func(c *websocket.Conn, msg websocket.Message) error {
		if string(msg.Data) == "slow" {
			<-release
		}
		return echoEvent(c, msg)
	})
	slow := wsDial(t, url, nil)
	if err := slow.Write(ctx, websocket.MessageText, []byte("slow")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c := wsDial(t, url, nil)
		if err := c.Write(ctx, websocket.MessageText, []byte("quick")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(ctx); err != nil {
			t.Fatalf("connection %d, beside one whose callback waits: %v", i, err)
		}
		c.Close(websocket.StatusNormalClosure, "")
		recv(t, ctx, closed)
	}
	close(release)
	if m, err := slow.Read(ctx); err != nil || string(m.Data) != "slow" {
		t.Fatalf("the slow connection's echo: %q, %v", m.Data, err)
	}
	slow.Close(websocket.StatusNormalClosure, "")
	recv(t, ctx, closed)
}

// TestEventsShutdown: Server.Shutdown closes events connections with 1001,
// completes their closing handshake and waits for them.
func TestEventsShutdown(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	s := &websocket.Server{}
	closed := make(chan error, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.AcceptEvents(w, r, websocket.Events{
			OnMessage: echoEvent,
			OnClose:   func(c *websocket.Conn, err error) { closed <- err },
		})
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	clients := []*websocket.Conn{wsDial(t, url, nil), wsDial(t, url, nil)}
	for _, c := range clients {
		if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Len(); n != 2 {
		t.Fatalf("Len = %d; want 2", n)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	for _, c := range clients {
		_, err := c.Read(ctx) // answers the close frame
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
			t.Fatalf("client read %v; want the server's 1001", err)
		}
	}
	if err := recv(t, ctx, shut); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range clients {
		err := recv(t, ctx, closed)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || !ce.Remote {
			t.Fatalf("OnClose got %v; want the client's echo of 1001", err)
		}
	}
	if st := s.Stats(); st.Ended != 2 || s.Len() != 0 {
		t.Fatalf("after Shutdown: Len %d, Stats %+v", s.Len(), st)
	}
}

// TestEventsCallbackError: an error from OnMessage closes the connection
// with its code, as a handler's error does in Open.
func TestEventsCallbackError(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, closed := eventsServer(t, nil, func(c *websocket.Conn, msg websocket.Message) error {
		if string(msg.Data) == "boom" {
			return errors.New("boom")
		}
		return &websocket.CloseError{Code: 4000, Reason: "bye"}
	})
	for _, tc := range []struct {
		send   string
		code   websocket.StatusCode
		reason string
	}{{"boom", websocket.StatusInternalError, "internal error"}, {"other", 4000, "bye"}} {
		c := wsDial(t, url, nil)
		if err := c.Write(ctx, websocket.MessageText, []byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		_, err := c.Read(ctx)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != tc.code || ce.Reason != tc.reason {
			t.Fatalf("after %q the client read %v; want close %d %q", tc.send, err, tc.code, tc.reason)
		}
		err = recv(t, ctx, closed)
		if !errors.As(err, &ce) || ce.Code != tc.code {
			t.Fatalf("OnClose got %v; want %d", err, tc.code)
		}
	}
}

// TestEventsOverTLS: a connection the event loop cannot take (TLS hides the
// socket's bytes) gets a reading goroutine with the same callbacks, and the
// same close handling.
func TestEventsOverTLS(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	closed := make(chan error, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.AcceptEvents(w, r, nil, websocket.Events{
			OnMessage: echoEvent,
			OnClose:   func(c *websocket.Conn, err error) { closed <- err },
		})
	}))
	defer srv.Close()
	c := wsDial(t, "wss"+strings.TrimPrefix(srv.URL, "https"), &websocket.DialOptions{HTTPClient: srv.Client()})
	for _, m := range []string{"one", "two"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Read(ctx); err != nil || string(got.Data) != m {
			t.Fatalf("echo of %q: %q, %v", m, got.Data, err)
		}
	}
	if err := c.Close(websocket.StatusGoingAway, ""); err != nil {
		t.Fatal(err)
	}
	var ce *websocket.CloseError
	if err := recv(t, ctx, closed); !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || !ce.Remote {
		t.Fatalf("OnClose got %v; want the peer's 1001", err)
	}
}

// TestEventsKeepalive: the loop delivers pongs to keepalive as a reading
// goroutine does: a peer that answers pings stays, one that does not is
// dropped with keepalive's reason.
func TestEventsKeepalive(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	opts := &websocket.AcceptOptions{Options: websocket.Options{PingInterval: 20 * time.Millisecond, PongTimeout: 500 * time.Millisecond}}
	url, closed := eventsServer(t, opts, echoEvent)
	answering := wsDial(t, url, nil)
	alive := answering.CloseRead(ctx) // reads, so it answers pings
	silent := wsDial(t, url, nil)     // nothing reads it: pings go unanswered
	err := recv(t, ctx, closed)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "keepalive") {
		t.Fatalf("OnClose got %v; want keepalive's timeout", err)
	}
	time.Sleep(time.Second) // 50 ping intervals, 2 pong timeouts
	if alive.Err() != nil {
		t.Fatalf("the connection that answers pings was closed too: %v", context.Cause(alive))
	}
	answering.Close(websocket.StatusNormalClosure, "")
	recv(t, ctx, closed)
	silent.CloseNow()
}

// TestEventsOverHTTP2: over HTTP/2 the stream lives only as long as the
// handler, so AcceptEvents serves it from the handler's goroutine and
// returns once it has ended.
func TestEventsOverHTTP2(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	closed := make(chan error, 1)
	returned := make(chan struct{}, 1)
	s := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.AcceptEvents(w, r, nil, websocket.Events{
			OnMessage: echoEvent,
			OnClose:   func(c *websocket.Conn, err error) { closed <- err },
		})
		returned <- struct{}{}
	}), true)
	c, resp := dialH2(t, ctx, s.wsURL("/"), &websocket.DialOptions{HTTPClient: s.client()})
	if resp.ProtoMajor != 2 {
		t.Fatalf("dialled over HTTP/%d; want 2", resp.ProtoMajor)
	}
	for _, m := range []string{"one", "two"} {
		echoOnce(t, ctx, c, websocket.MessageText, []byte(m))
	}
	select {
	case <-returned:
		t.Fatal("AcceptEvents returned while its HTTP/2 connection was open")
	default:
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	var ce *websocket.CloseError
	if err := recv(t, ctx, closed); !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || !ce.Remote {
		t.Fatalf("OnClose got %v; want the peer's 1000", err)
	}
	recv(t, ctx, returned)
}
