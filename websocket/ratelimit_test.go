package websocket_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// TestServerHandshakeRate: with a HandshakeRate shared by two Servers, a
// client's handshakes beyond the burst are refused on either, over HTTP/1.1
// and HTTP/2, with 429, Retry-After and a message, before they take a
// connection place; the hook sees the refusal as ErrRateLimited.
func TestServerHandshakeRate(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	// Next to no refill: the test is not timed.
	rate := &websocket.HandshakeRate{Rate: 0.001, Burst: 3}
	log := newHookLog()
	ws1 := &websocket.Server{HandshakeRate: rate, MaxConnections: 3, Hooks: log.hooks()}
	ws2 := &websocket.Server{HandshakeRate: rate, Hooks: log.hooks()}
	_, url1 := startH1(t, ws1)
	_, url2, h2Client := startH2(t, ws2)
	h2Opts := &websocket.DialOptions{HTTPVersion: websocket.HTTP2, HTTPClient: h2Client}

	var open []*websocket.Conn
	for i, d := range []struct {
		url  string
		opts *websocket.DialOptions
	}{{url1, nil}, {url2, h2Opts}, {url1, nil}} {
		c, _, err := websocket.Dial(ctx, d.url, d.opts)
		if err != nil {
			t.Fatalf("handshake %d of the burst: %v", i+1, err)
		}
		t.Cleanup(func() { c.CloseNow() }) // before the servers close, which wait for the handlers
		open = append(open, c)
	}
	// ws1 has one place left; the client has no token left.
	for _, d := range []struct {
		name string
		url  string
		opts *websocket.DialOptions
	}{{"HTTP/1.1", url1, nil}, {"HTTP/2", url2, h2Opts}} {
		_, resp, err := websocket.Dial(ctx, d.url, d.opts)
		var he *websocket.HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests {
			t.Fatalf("%s: dial over the rate: %v, want 429", d.name, err)
		}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs < 1 {
			t.Errorf("%s: 429 with Retry-After %q, want whole seconds", d.name, resp.Header.Get("Retry-After"))
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "too many WebSocket handshakes") {
			t.Errorf("%s: 429 body %q does not say why", d.name, body)
		}
	}
	limited := 0
	for _, h := range log.handshakeList() {
		if h.Err == nil {
			continue
		}
		if h.Status != http.StatusTooManyRequests || !errors.Is(h.Err, websocket.ErrRateLimited) {
			t.Errorf("hook: refusal %d %v, want 429 matching ErrRateLimited", h.Status, h.Err)
		}
		limited++
	}
	if limited != 2 {
		t.Errorf("the hooks saw %d refusals, want 2", limited)
	}
	if n := rate.Clients(); n != 1 {
		t.Errorf("the limiter tracks %d clients, want 1 (127.0.0.1)", n)
	}
	for _, c := range open {
		c.Close(websocket.StatusNormalClosure, "")
	}
	for range open {
		<-log.ended
	}
}
