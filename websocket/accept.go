package websocket

import (
	"bufio"
	"net/http"
	"strings"
	"time"
)

// Accept completes the opening handshake of a WebSocket request (RFC 6455
// §4.2) and returns the connection. The caller owns the connection and must
// close it; Open does that for you.
//
// A request that is not a valid handshake gets an HTTP error that says what
// was wrong (400; 405 for another method; 426 with Sec-WebSocket-Version: 13
// for another protocol version; 403 for a refused Origin), and Accept
// returns a *HandshakeError.
//
// Over HTTP/2 Accept takes an extended CONNECT (RFC 8441), answers 200 and
// runs the connection over the request's stream, which lives only as long
// as the handler: close the connection before the handler returns (Open
// does). net/http's server allows extended CONNECT only when run with
// GODEBUG=http2xconnect=1; see package http2xconnect. Go's HTTP/2 clients,
// Dial among them, hold a write buffer per WebSocket as big as the server's
// largest frame, 512 KiB with net/http's default: set the http.Server's
// HTTP2.MaxReadFrameSize to 16 KiB to make that 16 KiB.
func Accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, error) {
	return accept(w, r, opts, connConfig{})
}

// accept is Accept with the parts of the connection's configuration that
// Open adds.
func accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, cfg connConfig) (*Conn, error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	if herr := checkUpgradeRequest(w, r); herr != nil {
		return nil, refuse(w, herr)
	}
	if !opts.InsecureSkipVerifyOrigin {
		if ok, why := checkOrigin(r, opts.OriginPatterns); !ok {
			return nil, refuse(w, &HandshakeError{Status: http.StatusForbidden, Message: why})
		}
	}
	subprotocol := selectSubprotocol(r, opts.Subprotocols)
	extensions, deflate := negotiateServerCompression(r, opts.Compression)

	cfg.subprotocol, cfg.opts, cfg.deflate = subprotocol, &opts.Options, deflate
	var err error
	if r.ProtoMajor == 2 {
		cfg.t, err = acceptHTTP2(w, r, opts, subprotocol, extensions) // http2.go
	} else {
		cfg.t, cfg.prefix, err = acceptHTTP1(w, r, opts, subprotocol, extensions)
		if err == nil && cfg.events != nil {
			cfg.t = loopTransport(cfg.t) // eventsocket_linux.go
		}
	}
	if err != nil {
		return nil, err
	}
	return newConn(cfg), nil
}

// acceptHTTP1 takes the connection over from net/http and answers 101. It
// returns the transport and the bytes the client sent right behind its
// request, which net/http had already read.
func acceptHTTP1(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, subprotocol, extensions string) (transport, []byte, error) {
	netConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, refuse(w, &HandshakeError{Status: http.StatusInternalServerError, Message: "cannot take over the connection: " + err.Error()})
	}
	// The server's ReadTimeout and WriteTimeout left deadlines on the
	// connection; the WebSocket sets its own.
	netConn.SetDeadline(time.Time{})

	// The answer is built in a pooled write buffer: net/http leaves ~8 KiB
	// of garbage per hijacked connection already.
	resp := getWriteBuffer()
	*resp = appendAcceptResponse(*resp, r.Header.Get(headerKey), subprotocol, extensions, opts.ResponseHeader)
	netConn.SetWriteDeadline(time.Now().Add(opts.handshakeTimeout()))
	_, err = netConn.Write(*resp)
	putWriteBuffer(resp)
	if err != nil {
		netConn.Close()
		return nil, nil, &HandshakeError{Message: "writing the handshake response: " + err.Error(), cause: err}
	}
	netConn.SetWriteDeadline(time.Time{})

	var prefix []byte
	if n := brw.Reader.Buffered(); n > 0 {
		prefix, _ = brw.Reader.Peek(n)
		prefix = append([]byte(nil), prefix...)
	}
	releaseHijackedBuffers(brw)
	return newSocketTransport(netConn), prefix, nil
}

// releaseHijackedBuffers drops the buffers of the bufio.ReadWriter that
// Hijack handed over, which are net/http's own for the connection (4 KiB
// each). They are the caller's after Hijack, but net/http's goroutine keeps
// them reachable until the handler returns, which under Open is when the
// connection ends: emptied here, they are garbage at once.
func releaseHijackedBuffers(brw *bufio.ReadWriter) {
	*brw.Reader = bufio.Reader{}
	*brw.Writer = bufio.Writer{}
}

func (o *AcceptOptions) handshakeTimeout() time.Duration {
	if o.HandshakeTimeout > 0 {
		return o.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// checkUpgradeRequest checks the request against RFC 6455 §4.2.1.
func checkUpgradeRequest(w http.ResponseWriter, r *http.Request) *HandshakeError {
	bad := func(msg string) *HandshakeError {
		return &HandshakeError{Status: http.StatusBadRequest, Message: msg}
	}
	if r.ProtoMajor == 2 {
		return checkHTTP2Request(w, r) // RFC 8441, http2.go
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return &HandshakeError{Status: http.StatusMethodNotAllowed, Message: "a WebSocket handshake must use GET, not " + r.Method}
	}
	if !r.ProtoAtLeast(1, 1) {
		return bad("a WebSocket handshake needs HTTP/1.1 or later, not " + r.Proto)
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return bad(`this endpoint speaks WebSocket: the request's Connection header must contain "Upgrade"`)
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return bad(`this endpoint speaks WebSocket: the request's Upgrade header must contain "websocket"`)
	}
	if herr := checkVersion(w, r); herr != nil {
		return herr
	}
	keys := r.Header.Values(headerKey)
	switch {
	case len(keys) == 0:
		return bad("the request has no Sec-WebSocket-Key header")
	case len(keys) > 1 || !validKey(strings.Trim(keys[0], ows)):
		return bad("the Sec-WebSocket-Key header must be the base64 form of 16 bytes")
	}
	return nil
}

// checkVersion requires Sec-WebSocket-Version 13 (RFC 6455 §4.2.2, RFC 8441
// §5), answering another version with 426 and the version spoken.
func checkVersion(w http.ResponseWriter, r *http.Request) *HandshakeError {
	switch v := r.Header.Values(headerVersion); {
	case len(v) == 0:
		return &HandshakeError{Status: http.StatusBadRequest, Message: "the request has no Sec-WebSocket-Version header"}
	case len(v) > 1 || strings.Trim(v[0], ows) != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		return &HandshakeError{Status: http.StatusUpgradeRequired, Message: "unsupported WebSocket version " + quote(strings.Join(v, ", ")) + "; this server speaks version 13"}
	}
	return nil
}

// refuse writes the handshake error as a plain-text HTTP response.
func refuse(w http.ResponseWriter, herr *HandshakeError) error {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(herr.Status)
	w.Write([]byte(herr.Message + "\n"))
	return herr
}

// selectSubprotocol picks the server's most preferred subprotocol that the
// client offered.
func selectSubprotocol(r *http.Request, supported []string) string {
	if len(supported) == 0 {
		return ""
	}
	offered := headerTokens(r.Header, headerProtocol)
	for _, s := range supported {
		for _, o := range offered {
			if o == s { // subprotocol names are case-sensitive (RFC 6455 §4.1)
				return s
			}
		}
	}
	return ""
}

// appendAcceptResponse appends the 101 answer to a handshake with key to
// dst (RFC 6455 §4.2.2).
func appendAcceptResponse(dst []byte, key, subprotocol, extensions string, extra http.Header) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = appendAcceptKey(dst, strings.Trim(key, ows))
	dst = append(dst, "\r\n"...)
	if subprotocol != "" {
		dst = append(append(append(dst, "Sec-WebSocket-Protocol: "...), subprotocol...), "\r\n"...)
	}
	if extensions != "" {
		dst = append(append(append(dst, "Sec-WebSocket-Extensions: "...), extensions...), "\r\n"...)
	}
	if len(extra) > 0 {
		w := &sliceWriter{dst}
		extra.Write(w) // writing to a slice never fails
		dst = w.b
	}
	return append(dst, "\r\n"...)
}
