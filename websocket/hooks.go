package websocket

import (
	"net/http"
	"time"
)

// ServerHooks let an application observe a Server's WebSockets, for metrics
// or logs, without wrapping its handlers. Each hook is optional; a nil one
// costs nothing. Hooks run synchronously, in the goroutine of the request
// they describe, and may run concurrently with each other: they must be
// quick and safe for concurrent use (increment a counter, observe a
// histogram), and must not block.
type ServerHooks struct {
	// Handshake is called once per request that the Server's Open or
	// ServeHTTP handles, once it has been answered: accepted, or refused
	// with an HTTP error (a bad request, a refused origin, 429 over the
	// HandshakeRate, 503 at the connection limit or during shutdown).
	Handshake func(HandshakeInfo)

	// End is called once per accepted connection, when it has ended: its
	// handler returned and the connection is closed, so Stats are final.
	// It is called after the connection has left Stats' open connections
	// and joined its totals.
	End func(EndInfo)
}

// HandshakeInfo describes one answered WebSocket request.
type HandshakeInfo struct {
	// Request is the handshake's request. Hooks must not keep it.
	Request *http.Request
	// HTTPVersion is HTTP1 (an Upgrade, RFC 6455) or HTTP2 (an extended
	// CONNECT, RFC 8441).
	HTTPVersion HTTPVersion
	// Status is the HTTP status sent: 101 (HTTP/1.1) or 200 (HTTP/2) when
	// the WebSocket was accepted, the error status when it was refused, 0
	// when no response could be written.
	Status int
	// Err is nil when the WebSocket was accepted, and otherwise the
	// *HandshakeError the Server's Open returns. A refusal at the
	// connection limit matches ErrConnectionLimit (errors.Is), one over
	// the HandshakeRate ErrRateLimited, one during shutdown
	// ErrShuttingDown.
	Err error
	// Duration is how long the Server took from receiving the request (its
	// header was read) to sending the answer.
	Duration time.Duration
}

// EndInfo describes a connection that has ended.
type EndInfo struct {
	// Request is the handshake's request. Hooks must not keep it.
	Request *http.Request
	// HTTPVersion is the transport of the connection, as in HandshakeInfo.
	HTTPVersion HTTPVersion
	// Duration runs from the accepted handshake to the end.
	Duration time.Duration
	// Stats are the connection's final counts, close codes and closer.
	Stats ConnStats
}

func httpVersion(r *http.Request) HTTPVersion {
	if r.ProtoMajor == 2 {
		return HTTP2
	}
	return HTTP1
}

func acceptedStatus(v HTTPVersion) int {
	if v == HTTP2 {
		return http.StatusOK
	}
	return http.StatusSwitchingProtocols
}
