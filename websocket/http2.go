package websocket

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// WebSockets over HTTP/2 (RFC 8441): the client opens a stream with an
// extended CONNECT request (":protocol: websocket"), the server answers 200,
// and the frames of RFC 6455 then travel as the stream's DATA: the request
// body one way, the response body the other. There is no Sec-WebSocket-Key
// and no Sec-WebSocket-Accept; subprotocols and extensions are negotiated
// with the same headers as over HTTP/1.1.
//
// Go's net/http server accepts an extended CONNECT only when the GODEBUG
// environment variable held http2xconnect=1 as net/http started
// (src/net/http/h2_bundle.go, the init function that reads GODEBUG, and
// serverConn.serve, which then sends SETTINGS_ENABLE_CONNECT_PROTOCOL).
// Without it the server does not advertise the setting, so browsers and
// this package's Dial use HTTP/1.1, and an extended CONNECT is reset before
// it reaches a handler.

// xconnectEnabled mirrors net/http's own test of the environment, made when
// the program started.
var xconnectEnabled = strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1")

const xconnectHint = "this server has not enabled it: run it with GODEBUG=http2xconnect=1, or import github.com/duplexws/duplex/websocket/http2xconnect"

// checkHTTP2Request checks an HTTP/2 request against RFC 8441 §4-5: an
// extended CONNECT whose :protocol is websocket, with version 13.
func checkHTTP2Request(w http.ResponseWriter, r *http.Request) *HandshakeError {
	bad := func(msg string) *HandshakeError {
		return &HandshakeError{Status: http.StatusBadRequest, Message: msg}
	}
	if r.Method != http.MethodConnect {
		if !xconnectEnabled {
			return bad("this endpoint speaks WebSocket, which over HTTP/2 needs an extended CONNECT request (RFC 8441); " + xconnectHint)
		}
		return bad("this endpoint speaks WebSocket: over HTTP/2 it takes an extended CONNECT request with :protocol websocket (RFC 8441), not " + r.Method)
	}
	switch p := r.Header.Get(":protocol"); {
	case p == "":
		return bad("a CONNECT without :protocol asks for a tunnel; a WebSocket needs :protocol websocket (RFC 8441)")
	case !strings.EqualFold(p, "websocket"):
		return bad("the extended CONNECT asks for protocol " + quote(p) + "; this endpoint speaks websocket")
	}
	return checkVersion(w, r)
}

// acceptHTTP2 answers an extended CONNECT that passed the checks and returns
// the transport over its stream. The stream lives only as long as the
// handler: the connection must be closed before the handler returns, which
// Open does.
func acceptHTTP2(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, subprotocol, extensions string) (transport, error) {
	rc := http.NewResponseController(w)
	// The server's WriteTimeout and ReadTimeout bound the stream as they
	// bound a request; the WebSocket sets its own. A ResponseWriter that
	// cannot set deadlines hides the stream (a wrapper without Unwrap).
	if err := rc.SetWriteDeadline(time.Now().Add(opts.handshakeTimeout())); err != nil {
		return nil, refuse(w, &HandshakeError{Status: http.StatusInternalServerError, Message: "the ResponseWriter does not give access to the HTTP/2 stream (does a middleware wrap it without an Unwrap method?): " + err.Error(), cause: err})
	}
	rc.SetReadDeadline(time.Time{})

	h := w.Header()
	for k, vs := range opts.ResponseHeader {
		h[k] = append(h[k], vs...)
	}
	if subprotocol != "" {
		h.Set("Sec-WebSocket-Protocol", subprotocol)
	}
	if extensions != "" {
		h.Set("Sec-WebSocket-Extensions", extensions)
	}
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil && r.Context().Err() == nil {
		return nil, &HandshakeError{Message: "sending the handshake response: " + err.Error(), cause: err}
	}
	// A flush that failed because the peer reset the stream (which ends
	// the request's context) may still have sent the response: net/http
	// reports the reset when it races with the write's completion. The
	// peer may then have opened the WebSocket and sent frames before its
	// reset, a close frame among them, and they are still readable from
	// the body. So the connection opens, as it does over HTTP/1.1 when the
	// peer leaves just after the 101, and its first read tells what the
	// peer said, or 1006.
	rc.SetWriteDeadline(time.Time{})

	end := &serverStreamEnd{w: w, rc: rc, body: r.Body}
	var remote net.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		remote = net.TCPAddrFromAddrPort(ap)
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	end.s = newStreamTransport(end, r.Body, local, remote)
	return end.s, nil
}

// streamGrace is how long a closed WebSocket's HTTP/2 stream stays open
// while Open's handler goes on: long enough for the peer to read our close
// frame, which a reset could make it drop.
const streamGrace = time.Second

// serverStreamEnd is the server's side of a stream: the handler's
// ResponseWriter, usable only until the handler returns.
type serverStreamEnd struct {
	s    *streamTransport
	w    http.ResponseWriter
	rc   *http.ResponseController
	body io.ReadCloser

	mu       sync.Mutex
	bound    bool // Open runs the handler and tells when it returns
	returned bool // the handler returned: the ResponseWriter is not ours
	grace    *time.Timer
}

func (e *serverStreamEnd) write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err == nil {
		err = e.rc.Flush()
	}
	return n, err
}

// reset resets the stream by moving its write deadline into the past,
// unless the handler has returned (net/http panics then).
func (e *serverStreamEnd) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.returned {
		e.rc.SetWriteDeadline(pastDeadline)
	}
}

// finish ends reading (closing the request body wakes a blocked read).
// Over TCP closing the connection ends it; a stream ends only when the
// handler returns, so when Open's handler goes on after the connection
// closed, the stream is reset after streamGrace.
func (e *serverStreamEnd) finish(writing bool) {
	// A write in flight was stopped by Close; wait until it returned, so
	// that nothing touches the ResponseWriter after the handler does.
	e.s.wmu.Lock()
	e.s.wmu.Unlock()
	e.body.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.bound && !e.returned && !writing {
		e.grace = time.AfterFunc(streamGrace, e.reset)
	}
}

func (e *serverStreamEnd) boundToHandler() func() {
	e.mu.Lock()
	e.bound = true
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		e.returned = true
		if e.grace != nil {
			e.grace.Stop()
		}
		e.mu.Unlock()
	}
}
