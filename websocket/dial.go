package websocket

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Dial opens a WebSocket connection to a ws:// or wss:// URL (http:// and
// https:// are accepted too) and returns it with the server's handshake
// response. The handshake is bounded by ctx and HandshakeTimeout; ctx does
// not bound the connection after Dial returns.
//
// When the server refuses, the error is a *HandshakeError and the response
// is returned too, its Body holding the first KiB of what the server said.
//
// Over HTTP/2 (see DialOptions.HTTPVersion) the response is the server's 200
// to the extended CONNECT, with an empty Body.
func Dial(ctx context.Context, rawURL string, opts *DialOptions) (*Conn, *http.Response, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, &HandshakeError{Message: "invalid URL: " + err.Error(), cause: err}
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return nil, nil, &HandshakeError{Message: "the URL scheme must be ws or wss, not " + quote(u.Scheme)}
	}
	for _, p := range opts.Subprotocols {
		if !validToken(p) {
			return nil, nil, &HandshakeError{Message: "invalid subprotocol name " + quote(p)}
		}
	}
	if useHTTP2(u, opts) {
		return dialHTTP2(ctx, rawURL, u, opts) // http2_dial.go
	}
	hctx, cancel := context.WithTimeout(ctx, opts.handshakeTimeout())
	defer cancel()

	var keyBytes [16]byte
	rand.Read(keyBytes[:])
	key := base64.StdEncoding.EncodeToString(keyBytes[:])

	captured := new(capturedConn)
	req, err := http.NewRequestWithContext(context.WithValue(hctx, capturedConnKey{}, captured), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, &HandshakeError{Message: err.Error(), cause: err}
	}
	setHandshakeHeaders(req, opts)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)

	resp, err := handshakeClient(opts.HTTPClient).Do(req)
	if err != nil {
		return nil, nil, &HandshakeError{Message: err.Error(), cause: err}
	}
	subprotocol, deflate, herr := checkAcceptResponse(resp, key, opts)
	if herr != nil {
		keepBodyStart(resp)
		herr.Response = resp
		return nil, resp, herr
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, resp, &HandshakeError{Status: resp.StatusCode, Message: "the HTTP client's transport does not hand over upgraded connections", Response: resp}
	}
	t := newSocketTransport(&upgradedConn{ReadWriteCloser: rwc, nc: captured.get()})
	return newConn(connConfig{t: t, client: true, subprotocol: subprotocol, opts: &opts.Options, deflate: deflate}), resp, nil
}

// checkAcceptResponse checks the server's answer (RFC 6455 §4.1, steps 1-6
// of the client's checks).
func checkAcceptResponse(resp *http.Response, key string, opts *DialOptions) (string, *deflater, *HandshakeError) {
	fail := func(msg string) (string, *deflater, *HandshakeError) {
		return "", nil, &HandshakeError{Status: resp.StatusCode, Message: msg}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail("the server answered " + resp.Status + " instead of 101 Switching Protocols")
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") {
		return fail(`the response's Upgrade header does not contain "websocket"`)
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fail(`the response's Connection header does not contain "Upgrade"`)
	}
	if got := resp.Header.Get(headerAccept); got != acceptKey(key) {
		return fail("the response's Sec-WebSocket-Accept " + quote(got) + " does not match the key sent")
	}
	subprotocol, deflate, why := checkChoices(resp.Header, opts)
	if why != "" {
		return fail(why)
	}
	return subprotocol, deflate, nil
}

// setHandshakeHeaders puts on a handshake request what both transports
// send: the caller's headers and the version, subprotocol and extension
// offers.
func setHandshakeHeaders(req *http.Request, opts *DialOptions) {
	for k, vs := range opts.Header {
		if http.CanonicalHeaderKey(k) == "Host" {
			if len(vs) > 0 {
				req.Host = vs[0]
			}
			continue
		}
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	req.Header.Set("Sec-WebSocket-Version", "13")
	if len(opts.Subprotocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(opts.Subprotocols, ", "))
	}
	if opts.Compression.enabled() {
		req.Header.Set("Sec-WebSocket-Extensions", offerDeflate(opts.Compression))
	}
}

// checkChoices checks the extensions and subprotocol a server chose, over
// either transport: each must be among those offered. why is "" when they
// are.
func checkChoices(h http.Header, opts *DialOptions) (subprotocol string, deflate *deflater, why string) {
	deflate, why = negotiateClientCompression(h, opts.Compression)
	if why != "" {
		return "", nil, why
	}
	protos := headerTokens(h, headerProtocol)
	switch {
	case len(protos) == 0:
		return "", deflate, ""
	case len(protos) > 1:
		return "", nil, "the server chose more than one subprotocol"
	}
	for _, p := range opts.Subprotocols {
		if p == protos[0] {
			return p, deflate, ""
		}
	}
	return "", nil, "the server chose subprotocol " + quote(protos[0]) + ", which was not offered"
}

// keepBodyStart replaces a refused handshake's body with its first KiB, so
// the caller can read why without holding the connection.
func keepBodyStart(resp *http.Response) {
	var b []byte
	if resp.StatusCode != http.StatusSwitchingProtocols { // a 101's body is the connection
		b, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
}

// upgradedConn is the connection a 101 response hands over: its body,
// which reads what net/http had buffered first. nc is the underlying
// network connection when the dialer could capture it; it gives the
// deadlines and addresses. Without it a blocked read cannot be
// interrupted, so cancellation closes the connection instead.
type upgradedConn struct {
	io.ReadWriteCloser
	nc net.Conn
}

func (u *upgradedConn) SetDeadline(t time.Time) error {
	if err := u.SetReadDeadline(t); err != nil {
		return err
	}
	return u.SetWriteDeadline(t)
}

func (u *upgradedConn) SetReadDeadline(t time.Time) error {
	if u.nc == nil {
		return u.noDeadlines(t)
	}
	return u.nc.SetReadDeadline(t)
}

func (u *upgradedConn) SetWriteDeadline(t time.Time) error {
	if u.nc == nil {
		return u.noDeadlines(t)
	}
	return u.nc.SetWriteDeadline(t)
}

func (u *upgradedConn) noDeadlines(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		return u.Close()
	}
	return errors.ErrUnsupported
}

func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (u *upgradedConn) LocalAddr() net.Addr {
	if u.nc == nil {
		return unknownAddr{}
	}
	return u.nc.LocalAddr()
}

func (u *upgradedConn) RemoteAddr() net.Addr {
	if u.nc == nil {
		return unknownAddr{}
	}
	return u.nc.RemoteAddr()
}

// capturedConn receives the network connection the transport dials for
// one handshake, so the WebSocket can set deadlines on it.
type capturedConn struct{ p atomic.Pointer[net.Conn] }

type capturedConnKey struct{}

func (o *DialOptions) handshakeTimeout() time.Duration {
	if o.HandshakeTimeout > 0 {
		return o.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (c *capturedConn) get() net.Conn {
	if p := c.p.Load(); p != nil {
		return *p
	}
	return nil
}

func capturingDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err == nil {
			if c, ok := ctx.Value(capturedConnKey{}).(*capturedConn); ok {
				c.p.Store(&conn)
			}
		}
		return conn, err
	}
}

var defaultDialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}

// defaultHandshakeClient speaks HTTP/1.1 only and keeps no idle
// connections: every handshake dials its own.
var defaultHandshakeClient = &http.Client{Transport: &http.Transport{
	Proxy:               http.ProxyFromEnvironment,
	DialContext:         capturingDial(defaultDialer.DialContext),
	TLSHandshakeTimeout: 10 * time.Second,
	DisableKeepAlives:   true,
	TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
}}

// handshakeClient adapts a caller's client: an *http.Transport is cloned
// so that its dials are captured and HTTP/2 is not used for the handshake.
func handshakeClient(c *http.Client) *http.Client {
	if c == nil {
		return defaultHandshakeClient
	}
	base, ok := c.Transport.(*http.Transport)
	if c.Transport == nil {
		base, ok = http.DefaultTransport.(*http.Transport)
	}
	if !ok {
		return c
	}
	t := base.Clone()
	dial := t.DialContext
	if dial == nil {
		dial = defaultDialer.DialContext
	}
	t.DialContext = capturingDial(dial)
	if t.DialTLSContext != nil {
		t.DialTLSContext = capturingDial(t.DialTLSContext)
	}
	t.DisableKeepAlives = true
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if t.TLSClientConfig != nil {
		t.TLSClientConfig.NextProtos = nil
	}
	cc := *c
	cc.Transport = t
	// Dial bounds the handshake itself; Client.Timeout would wrap the 101's
	// body, which is the connection, and hide it.
	cc.Timeout = 0
	return &cc
}
