package websocket

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func upgradeRequest(url string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Connection", "keep-alive, Upgrade")
	req.Header.Set("Upgrade", "WebSocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return req
}

func TestAcceptRefusesBadHandshakes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err == nil {
			c.CloseNow()
		}
	}))
	defer srv.Close()
	cases := []struct {
		name   string
		edit   func(*http.Request)
		status int
		header string // a response header that must be set
		body   string
	}{
		{"post", func(r *http.Request) { r.Method = http.MethodPost }, 405, "Allow", "must use GET"},
		{"no upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 400, "", "Upgrade header"},
		{"upgrade to h2c", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, 400, "", "Upgrade header"},
		{"no connection upgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 400, "", "Connection header"},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426, "Sec-WebSocket-Version", "version 13"},
		{"no version", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, 400, "", "Sec-WebSocket-Version"},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400, "", "Sec-WebSocket-Key"},
		{"short key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400, "", "16 bytes"},
		{"cross origin", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, 403, "", "not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := upgradeRequest(srv.URL)
			tc.edit(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.header != "" && resp.Header.Get(tc.header) == "" {
				t.Fatalf("response lacks %s", tc.header)
			}
			if tc.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatalf("426 without Sec-WebSocket-Version: 13")
			}
		})
	}
}

func TestAcceptResponseDigest(t *testing.T) {
	// RFC 6455 §1.3's worked example.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept digest %q", got)
	}
}

// The answer carries the chosen subprotocol, the extensions and the
// options' extra headers, every value of each; building it in a buffer
// with room allocates nothing.
func TestAcceptResponseHeaders(t *testing.T) {
	extra := http.Header{"X-Node": {"a"}, "Set-Cookie": {"s=1", "t=2"}}
	url := echoServer(t, &AcceptOptions{Subprotocols: []string{"chat.v1"}, ResponseHeader: extra})
	c, resp, err := Dial(context.Background(), url, &DialOptions{Subprotocols: []string{"chat.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "chat.v1" {
		t.Errorf("Sec-WebSocket-Protocol %q", got)
	}
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(got, "permessage-deflate") {
		t.Errorf("Sec-WebSocket-Extensions %q", got)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "s=1" || got[1] != "t=2" {
		t.Errorf("Set-Cookie %q", got)
	}
	if got := resp.Header.Get("X-Node"); got != "a" {
		t.Errorf("X-Node %q", got)
	}

	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		buf = appendAcceptResponse(buf[:0], "dGhlIHNhbXBsZSBub25jZQ==", "chat.v1", "permessage-deflate", nil)
	})
	if allocs != 0 {
		t.Errorf("building the answer allocates %.0f times", allocs)
	}
	if !strings.Contains(string(buf), "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") || !strings.HasSuffix(string(buf), "\r\n\r\n") {
		t.Errorf("answer %q", buf)
	}
}

// The header names looked up are net/http's keys as they are, so that no
// lookup makes a new string.
func TestHandshakeHeaderNamesAreCanonical(t *testing.T) {
	for _, k := range []string{headerKey, headerVersion, headerProtocol, headerExtensions, headerAccept} {
		if c := textproto.CanonicalMIMEHeaderKey(k); c != k {
			t.Errorf("%q is keyed %q", k, c)
		}
	}
}

func TestOriginCheck(t *testing.T) {
	cases := []struct {
		origin, host string
		patterns     []string
		ok           bool
	}{
		{"", "a.example", nil, true},
		{"http://a.example", "a.example", nil, true},
		{"https://A.Example", "a.example", nil, true},
		{"https://b.example", "a.example", nil, false},
		{"https://b.example", "a.example", []string{"*.example"}, true},
		{"http://localhost:3000", "a.example", []string{"localhost:*"}, true},
		{"http://b.example", "a.example", []string{"https://*.example"}, false},
		{"https://b.example", "a.example", []string{"https://*.example"}, true},
		{"null", "a.example", nil, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "http://"+c.host+"/", nil)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if ok, why := checkOrigin(r, c.patterns); ok != c.ok {
			t.Errorf("origin %q host %q patterns %v: got %v (%s), want %v", c.origin, c.host, c.patterns, ok, why, c.ok)
		}
	}
}

func TestSubprotocolNegotiation(t *testing.T) {
	url := echoServer(t, &AcceptOptions{Subprotocols: []string{"chat.v2", "chat.v1"}})
	ctx := context.Background()
	c, resp, err := Dial(ctx, url, &DialOptions{Subprotocols: []string{"chat.v1", "chat.v2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "chat.v2" || resp.Header.Get("Sec-WebSocket-Protocol") != "chat.v2" {
		t.Fatalf("chose %q, want the server's preference chat.v2", c.Subprotocol())
	}
	c2, _, err := Dial(ctx, url, &DialOptions{Subprotocols: []string{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	if c2.Subprotocol() != "" {
		t.Fatalf("chose %q with no common subprotocol", c2.Subprotocol())
	}
}

func TestDialReportsRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no entry without a token", http.StatusUnauthorized)
	}))
	defer srv.Close()
	_, resp, err := Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 401 || resp == nil || he.Response != resp {
		t.Fatalf("got %v, resp %v", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "no entry") {
		t.Fatalf("body %q", body)
	}
}

// rawHandshakeServer answers one WebSocket handshake with a response that
// edit may spoil, then holds the connection until the test ends.
func rawHandshakeServer(t *testing.T, edit func(h http.Header)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		h := http.Header{}
		h.Set("Upgrade", "websocket")
		h.Set("Connection", "Upgrade")
		h.Set("Sec-WebSocket-Accept", acceptKey(req.Header.Get("Sec-WebSocket-Key")))
		edit(h)
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\n")
		h.Write(conn)
		io.WriteString(conn, "\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn)
	}()
	return "ws://" + ln.Addr().String() + "/"
}

func TestDialChecksResponse(t *testing.T) {
	cases := map[string]func(http.Header){
		"wrong accept":          func(h http.Header) { h.Set("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") },
		"no upgrade":            func(h http.Header) { h.Del("Upgrade") },
		"no connection":         func(h http.Header) { h.Set("Connection", "close") },
		"unoffered subprotocol": func(h http.Header) { h.Set("Sec-WebSocket-Protocol", "x") },
		"unoffered extension":   func(h http.Header) { h.Set("Sec-WebSocket-Extensions", "x-webkit-deflate-frame") },
		"bad deflate answer":    func(h http.Header) { h.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits") },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			url := rawHandshakeServer(t, edit)
			c, _, err := Dial(context.Background(), url, nil)
			var he *HandshakeError
			if !errors.As(err, &he) || he.Status != 101 {
				if c != nil {
					c.CloseNow()
				}
				t.Fatalf("got %v, want a HandshakeError", err)
			}
		})
	}
}
