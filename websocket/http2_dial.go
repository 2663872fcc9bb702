package websocket

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// HTTPVersion chooses the HTTP version of Dial's handshake.
type HTTPVersion int

const (
	// HTTPAuto, the default, uses HTTP/2 for a wss:// URL when the TLS
	// handshake negotiates h2 and the server allows extended CONNECT (it
	// sent SETTINGS_ENABLE_CONNECT_PROTOCOL), and HTTP/1.1 otherwise: also
	// when the server refuses the WebSocket over HTTP/2. ws:// URLs, and
	// clients whose transport does not do HTTP/2 or goes through a proxy,
	// use HTTP/1.1.
	HTTPAuto HTTPVersion = iota
	// HTTP1 always uses an HTTP/1.1 Upgrade (RFC 6455).
	HTTP1
	// HTTP2 always uses an extended CONNECT over HTTP/2 (RFC 8441), and
	// fails when the server does not support it. Over ws:// it speaks
	// cleartext HTTP/2 with prior knowledge (h2c).
	HTTP2
)

func (v HTTPVersion) String() string {
	switch v {
	case HTTPAuto:
		return "auto"
	case HTTP1:
		return "HTTP/1.1"
	case HTTP2:
		return "HTTP/2"
	}
	return "HTTPVersion(" + strconv.Itoa(int(v)) + ")"
}

// How Dial reaches net/http's HTTP/2 client, which can send an extended
// CONNECT but only behind the http.Transport's header check:
//
//   - http.Transport.RoundTrip refuses the ":protocol" pseudo-header for
//     every request, HTTP/2 ones included (validateHeaders in
//     src/net/http/transport.go runs before the HTTP/2 code is chosen).
//   - The HTTP/2 client itself accepts it (httpcommon.EncodeHeaders in
//     src/net/http/internal/httpcommon/httpcommon.go sends :protocol for a
//     CONNECT) and waits for the server's first SETTINGS to learn whether
//     extended CONNECT is allowed (clientStream.writeRequest in
//     h2_bundle.go; it fails with "extended connect not supported by peer").
//   - An http.Transport hands connections that negotiated h2 to the
//     function in its TLSNextProto["h2"], which adds the connection to its
//     HTTP/2 pool and returns the HTTP/2 client as a RoundTripper.
//
// So Dial keeps, per http.Transport it is given, a clone set up for HTTP/2,
// dials and does the TLS handshake itself, passes an h2 connection to the
// clone's TLSNextProto["h2"], and sends the extended CONNECT through the
// RoundTripper it gets back. Later Dials to the same host send theirs
// through that RoundTripper directly: it finds the pooled connection (many
// WebSockets share one HTTP/2 connection) or answers "no cached
// connection", and a new one is dialed. A connection that negotiated
// HTTP/1.1 is not wasted: the HTTP/1.1 handshake runs over it.

// useHTTP2 decides whether Dial tries HTTP/2.
func useHTTP2(u *url.URL, opts *DialOptions) bool {
	switch opts.HTTPVersion {
	case HTTP1:
		return false
	case HTTP2:
		return true
	}
	if u.Scheme != "https" {
		return false
	}
	base, ok := baseTransport(opts.HTTPClient)
	if !ok || !transportSpeaksHTTP2(base) {
		return false
	}
	return proxyFor(base, u) == nil
}

// baseTransport is the transport whose settings Dial follows.
func baseTransport(c *http.Client) (*http.Transport, bool) {
	if c == nil {
		return defaultHTTP2Base, true
	}
	if c.Transport == nil {
		t, ok := http.DefaultTransport.(*http.Transport)
		return t, ok
	}
	t, ok := c.Transport.(*http.Transport)
	return t, ok
}

// defaultHTTP2Base is the transport of Dial without an HTTPClient.
var defaultHTTP2Base = &http.Transport{
	Proxy:               http.ProxyFromEnvironment,
	DialContext:         defaultDialer.DialContext,
	TLSHandshakeTimeout: 10 * time.Second,
	IdleConnTimeout:     90 * time.Second,
	ForceAttemptHTTP2:   true,
}

// transportSpeaksHTTP2 follows net/http's rules for when a Transport uses
// HTTP/2 (Transport.protocols in src/net/http/transport.go).
func transportSpeaksHTTP2(t *http.Transport) bool {
	switch {
	case t.Protocols != nil:
		return t.Protocols.HTTP2()
	case t.TLSNextProto != nil:
		return t.TLSNextProto["h2"] != nil
	case t.ForceAttemptHTTP2:
		return true
	}
	return t.TLSClientConfig == nil && t.DialContext == nil && t.DialTLSContext == nil && t.Dial == nil && t.DialTLS == nil //lint:ignore SA1019 as net/http does
}

func proxyFor(t *http.Transport, u *url.URL) *url.URL {
	if t.Proxy == nil {
		return nil
	}
	p, err := t.Proxy(&http.Request{Method: http.MethodConnect, URL: u, Header: http.Header{}, Host: u.Host})
	if err != nil {
		return nil
	}
	return p
}

// http2Client is the HTTP/2 side of one base transport.
type http2Client struct {
	t1  *http.Transport // the clone: settings, TLS config and dialers
	h2  func(string, *tls.Conn) http.RoundTripper
	h2c func(string, *tls.Conn) http.RoundTripper // nil when unavailable
	rt  atomic.Pointer[http.RoundTripper]         // for https, once known
	rtc atomic.Pointer[http.RoundTripper]         // for cleartext, once known
}

// http2Clients holds an http2Client per base transport, dropped when the
// base transport is collected.
var http2Clients sync.Map // weak.Pointer[http.Transport] -> *http2Client

func http2ClientFor(base *http.Transport) (*http2Client, error) {
	key := weak.Make(base)
	if v, ok := http2Clients.Load(key); ok {
		return v.(*http2Client), nil
	}
	t1 := base.Clone()
	if t1.TLSNextProto == nil || t1.TLSNextProto["h2"] == nil {
		t1.TLSNextProto = nil
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
		t1.Protocols = p
	}
	// An extended CONNECT has no body to decompress.
	t1.DisableCompression = true
	// The pool is Dial's own, out of reach of the base transport's
	// CloseIdleConnections: idle connections must end by themselves.
	if t1.IdleConnTimeout <= 0 {
		t1.IdleConnTimeout = 90 * time.Second
	}
	// Sets up t1's HTTP/2 (Transport.onceSetNextProtoDefaults); it has no
	// idle connections to close.
	t1.CloseIdleConnections()
	h := &http2Client{t1: t1, h2: t1.TLSNextProto["h2"], h2c: t1.TLSNextProto["unencrypted_http2"]}
	if h.h2 == nil {
		return nil, errors.New("the HTTP client's transport cannot be set up for HTTP/2")
	}
	v, loaded := http2Clients.LoadOrStore(key, h)
	if !loaded {
		runtime.AddCleanup(base, func(k weak.Pointer[http.Transport]) {
			if v, ok := http2Clients.LoadAndDelete(k); ok {
				v.(*http2Client).t1.CloseIdleConnections()
			}
		}, key)
	}
	return v.(*http2Client), nil
}

// dial opens a new connection to addr: TLS with ALPN for https, plain TCP
// for h2c.
func (h *http2Client) dial(ctx context.Context, addr, serverName string, useTLS bool) (net.Conn, error) {
	t := h.t1
	if useTLS && t.DialTLSContext != nil {
		return t.DialTLSContext(ctx, "tcp", addr)
	}
	var conn net.Conn
	var err error
	switch {
	case t.DialContext != nil:
		conn, err = t.DialContext(ctx, "tcp", addr)
	case t.Dial != nil: //lint:ignore SA1019 honoured as net/http does
		conn, err = t.Dial("tcp", addr)
	default:
		conn, err = defaultDialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil || !useTLS {
		return conn, err
	}
	cfg := t.TLSClientConfig.Clone() // set up by the clone: NextProtos h2, http/1.1
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	tc := tls.Client(conn, cfg)
	hctx := ctx
	if t.TLSHandshakeTimeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, t.TLSHandshakeTimeout)
		defer cancel()
	}
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// cleartextConn lets a plain connection through TLSNextProto's *tls.Conn
// for cleartext HTTP/2: net/http unwraps it by this method
// (http2unencryptedNetConnFromTLSConn in h2_bundle.go).
type cleartextConn struct{ net.Conn }

func (c cleartextConn) UnencryptedNetConn() net.Conn { return c.Conn }

// http2Failure says why HTTP/2 could not carry the WebSocket.
type http2Failure struct {
	why      string
	resp     *http.Response // the server's refusal over HTTP/2, if any
	conn     net.Conn       // a TLS connection that negotiated HTTP/1.1, for the fallback
	fallback bool           // HTTPAuto may try HTTP/1.1
}

func (f *http2Failure) error() *HandshakeError {
	herr := &HandshakeError{Message: "WebSocket over HTTP/2: " + f.why, Response: f.resp}
	if f.resp != nil {
		herr.Status = f.resp.StatusCode
	}
	return herr
}

// dialHTTP2 is Dial over HTTP/2, falling back to HTTP/1.1 with HTTPAuto.
func dialHTTP2(ctx context.Context, rawURL string, u *url.URL, opts *DialOptions) (*Conn, *http.Response, error) {
	hctx, cancel := context.WithTimeout(ctx, opts.handshakeTimeout())
	defer cancel()

	c, resp, fail := dialHTTP2Stream(hctx, u, opts)
	if fail == nil {
		return c, resp, nil
	}
	if opts.HTTPVersion == HTTP2 || !fail.fallback {
		if fail.conn != nil {
			fail.conn.Close()
		}
		return nil, fail.resp, fail.error()
	}
	o := *opts
	o.HTTPVersion = HTTP1
	var unused func() bool
	if fail.conn != nil {
		o.HTTPClient, unused = clientOverConn(opts.HTTPClient, fail.conn)
	}
	c, resp, err := Dial(hctx, rawURL, &o)
	if unused != nil && unused() {
		fail.conn.Close()
	}
	var herr *HandshakeError
	if errors.As(err, &herr) {
		herr.Message += " (HTTP/2 was tried first: " + fail.why + ")"
	}
	return c, resp, err
}

// dialHTTP2Stream sends the extended CONNECT and, when the server accepts,
// returns the connection over the stream.
func dialHTTP2Stream(ctx context.Context, u *url.URL, opts *DialOptions) (*Conn, *http.Response, *http2Failure) {
	base, ok := baseTransport(opts.HTTPClient)
	if !ok {
		return nil, nil, &http2Failure{why: "the HTTP client's transport is not an *http.Transport", fallback: true}
	}
	if p := proxyFor(base, u); p != nil {
		return nil, nil, &http2Failure{why: "not supported through a proxy (" + p.Redacted() + ")", fallback: true}
	}
	h, err := http2ClientFor(base)
	if err != nil {
		return nil, nil, &http2Failure{why: err.Error(), fallback: true}
	}
	useTLS := u.Scheme == "https"
	if !useTLS && h.h2c == nil {
		return nil, nil, &http2Failure{why: "the HTTP client's transport has no cleartext HTTP/2"}
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if useTLS {
			port = "443"
		}
	}
	addr := net.JoinHostPort(u.Hostname(), port)

	// The request's context governs the stream for its whole life, so it
	// is not ctx: ctx bounds the handshake only.
	var netConn atomic.Pointer[net.Conn]
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { netConn.Store(&info.Conn) }}
	sctx, endStream := context.WithCancel(httptrace.WithClientTrace(context.WithoutCancel(ctx), trace))
	stopWatch := context.AfterFunc(ctx, endStream)
	fail := func(f *http2Failure) (*Conn, *http.Response, *http2Failure) {
		stopWatch()
		endStream()
		if ctx.Err() != nil {
			f.why, f.fallback = "handshake: "+ctx.Err().Error(), false
		}
		return nil, nil, f
	}

	var pw *io.PipeWriter
	send := func(rt http.RoundTripper) (*http.Response, error) {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		req := newConnectRequest(sctx, u, pr, opts)
		return rt.RoundTrip(req)
	}
	var resp *http.Response
	rtp := h.rt.Load()
	if !useTLS {
		rtp = h.rtc.Load()
	}
	if rtp != nil {
		resp, err = send(*rtp)
		var nc interface{ IsHTTP2NoCachedConnError() }
		if errors.As(err, &nc) {
			pw.Close()
			resp, err = nil, nil
		}
	}
	if resp == nil && err == nil {
		var conn net.Conn
		conn, err = h.dial(ctx, addr, u.Hostname(), useTLS)
		if err != nil {
			return fail(&http2Failure{why: "dialing " + addr + ": " + err.Error()})
		}
		var rt http.RoundTripper
		if useTLS {
			tc, ok := conn.(*tls.Conn)
			proto := ""
			if ok {
				proto = tc.ConnectionState().NegotiatedProtocol
			}
			if proto != "h2" {
				why := "the server did not negotiate HTTP/2 (ALPN protocol " + quote(proto) + ")"
				if !ok {
					why = "the transport's DialTLSContext did not return a *tls.Conn"
				}
				return fail(&http2Failure{why: why, conn: conn, fallback: true})
			}
			rt = h.h2(addr, tc)
			h.rt.Store(&rt)
		} else {
			rt = h.h2c(addr, tls.Client(cleartextConn{conn}, nil))
			h.rtc.Store(&rt)
		}
		resp, err = send(rt)
	}
	if err != nil {
		pw.Close()
		// The usual cause is net/http's "extended connect not supported by
		// peer", which it exports no error value for; the hint says what
		// it means.
		why := err.Error() + " (the server must allow extended CONNECT: SETTINGS_ENABLE_CONNECT_PROTOCOL)"
		return fail(&http2Failure{why: why, fallback: true})
	}
	if !stopWatch() {
		resp.Body.Close()
		pw.Close()
		return fail(&http2Failure{})
	}
	if c := opts.HTTPClient; c != nil && c.Jar != nil {
		if rc := resp.Cookies(); len(rc) > 0 {
			c.Jar.SetCookies(u, rc)
		}
	}
	if resp.StatusCode != http.StatusOK {
		pw.Close()
		keepBodyStart(resp) // before the stream ends
		endStream()
		return nil, nil, &http2Failure{why: "the server answered " + resp.Status + " to the extended CONNECT instead of 200 OK", resp: resp, fallback: true}
	}
	subprotocol, deflate, why := checkChoices(resp.Header, opts)
	if why != "" {
		resp.Body.Close()
		pw.Close()
		endStream()
		return nil, nil, &http2Failure{why: why}
	}

	body := &http2ClientBody{ReadCloser: resp.Body, end: endStream}
	var local, remote net.Addr
	if p := netConn.Load(); p != nil && *p != nil {
		local, remote = (*p).LocalAddr(), (*p).RemoteAddr()
	}
	t := newStreamTransport(&clientStreamEnd{pw: pw, body: body}, body, local, remote)
	resp.Body = http.NoBody // the stream is the connection's
	return newConn(connConfig{t: t, client: true, subprotocol: subprotocol, opts: &opts.Options, deflate: deflate}), resp, nil
}

// clientStreamEnd is the client's side of a stream: the request body it
// writes through a pipe, and the response body.
type clientStreamEnd struct {
	pw   *io.PipeWriter
	body *http2ClientBody
}

func (e *clientStreamEnd) write(p []byte) (int, error) { return e.pw.Write(p) }

func (e *clientStreamEnd) reset() {
	e.pw.CloseWithError(errStreamClosed)
	e.body.Close() // resets the stream
}

// finish ends the request body (END_STREAM) and reads the response to its
// end, so that the stream ends cleanly when the server ends its side too;
// a server that does not is reset after http2CloseGrace.
func (e *clientStreamEnd) finish(writing bool) {
	if !writing {
		e.pw.Close()
	}
	e.body.closeAfter(http2CloseGrace)
	go func() {
		io.Copy(io.Discard, e.body)
		e.body.Close()
	}()
}

func (e *clientStreamEnd) boundToHandler() func() { return func() {} }

// http2CloseGrace is how long a closed connection waits for the server's
// END_STREAM before resetting the stream.
const http2CloseGrace = 2 * time.Second

// http2ClientBody is the response body of a client's stream. Closing it
// ends the stream: cleanly once the server has ended its side, with a reset
// before.
type http2ClientBody struct {
	io.ReadCloser
	// rmu makes reads take turns: finish's drain may start while a read
	// ahead still waits, and net/http's stream body wakes only one of two
	// concurrent readers when the stream ends, leaving the other until the
	// grace reset.
	rmu   sync.Mutex
	end   context.CancelFunc // cancels the request's context
	mu    sync.Mutex
	done  bool
	grace *time.Timer
}

func (b *http2ClientBody) Read(p []byte) (int, error) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	return b.ReadCloser.Read(p)
}

func (b *http2ClientBody) Close() error {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return nil
	}
	b.done = true
	if b.grace != nil {
		b.grace.Stop()
	}
	b.mu.Unlock()
	err := b.ReadCloser.Close()
	b.end()
	return err
}

// closeAfter closes the body after d unless it is closed before.
func (b *http2ClientBody) closeAfter(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.grace = time.AfterFunc(d, func() { b.Close() })
	}
}

func newConnectRequest(ctx context.Context, u *url.URL, body io.ReadCloser, opts *DialOptions) *http.Request {
	req := (&http.Request{
		Method:     http.MethodConnect,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     make(http.Header),
		Body:       body, // closed by the HTTP/2 client when the stream ends, which fails a blocked write
		Host:       u.Host,
	}).WithContext(ctx)
	setHandshakeHeaders(req, opts)
	if c := opts.HTTPClient; c != nil && c.Jar != nil {
		for _, ck := range c.Jar.Cookies(u) {
			req.AddCookie(ck)
		}
	}
	req.Header[":protocol"] = []string{"websocket"}
	return req
}

// clientOverConn returns a copy of c whose transport uses conn, a TLS
// connection that negotiated HTTP/1.1, for its one handshake, and a
// function that reports whether conn went unused.
func clientOverConn(c *http.Client, conn net.Conn) (*http.Client, func() bool) {
	var used atomic.Bool
	dial := func(context.Context, string, string) (net.Conn, error) {
		if used.Swap(true) {
			return nil, errors.New("websocket: the connection for the HTTP/1.1 handshake was already used")
		}
		return conn, nil
	}
	cc := new(http.Client)
	if c != nil {
		*cc = *c
	}
	cc.Timeout = 0 // see handshakeClient
	cc.Transport = &http.Transport{
		DialTLSContext:    dial,
		DisableKeepAlives: true,
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	return cc, func() bool { return !used.Load() }
}
