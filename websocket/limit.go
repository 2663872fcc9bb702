package websocket

import (
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Errors a Server's refusals match (errors.Is), in the *HandshakeError that
// its Open returns and that ServerHooks.Handshake sees.
var (
	// ErrConnectionLimit: the Server was at MaxConnections, or its
	// ConnLimit was reached. The client got 503 with Retry-After.
	ErrConnectionLimit = errors.New("websocket: connection limit reached")
	// ErrShuttingDown: Shutdown had begun. The client got 503 with
	// Retry-After.
	ErrShuttingDown = errors.New("websocket: server shutting down")
)

// ConnLimit caps the WebSockets of several Servers together, as one process
// serving several endpoints needs when the cap protects what the process
// has (file descriptors, memory): set the same *ConnLimit as the Limit of
// each Server. A connection counts from the moment its request enters the
// Server, before the handshake, until it has ended.
//
// A ConnLimit must not be copied after first use, and Max must not change
// once it is in use.
type ConnLimit struct {
	// Max is the most connections at once; 0 or less means no cap.
	Max int

	n atomic.Int64
}

// Len returns how many connections hold a place.
func (l *ConnLimit) Len() int { return int(l.n.Load()) }

// acquire takes a place, or reports false when none is free. A nil
// ConnLimit always has one. The compare-and-swap loop never lets the count
// pass Max, even for a moment, so that a request is refused only when the
// limit is really reached.
func (l *ConnLimit) acquire() bool {
	if l == nil || l.Max <= 0 {
		return true
	}
	for {
		n := l.n.Load()
		if n >= int64(l.Max) {
			return false
		}
		if l.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *ConnLimit) release() {
	if l != nil && l.Max > 0 {
		l.n.Add(-1)
	}
}

// retryAfter is the Retry-After, in seconds, of the 503 that refuses a
// WebSocket during shutdown or at the connection limit: time for a
// restarted server to listen again, or for connections to end.
const retryAfter = 5

// refuseUnavailable answers a WebSocket request that the Server will not
// take (cause: ErrShuttingDown or ErrConnectionLimit) with 503, Retry-After
// and a message that says what to do, before any upgrade.
func refuseUnavailable(w http.ResponseWriter, r *http.Request, cause error) *HandshakeError {
	herr := &HandshakeError{Status: http.StatusServiceUnavailable, cause: cause}
	if cause == ErrShuttingDown {
		herr.Message = "the server is shutting down: connect again in a few seconds (see Retry-After)"
	} else {
		herr.Message = "the server is at its limit of WebSocket connections: connect again in a few seconds (see Retry-After)"
	}
	writeRefusal(w, r, herr, retryAfter)
	return herr
}

// writeRefusal writes herr, a refusal that a later attempt may not get,
// with Retry-After in seconds.
func writeRefusal(w http.ResponseWriter, r *http.Request, herr *HandshakeError, retryAfter int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Retry-After", strconv.Itoa(retryAfter))
	if r.ProtoMajor == 1 {
		// The server is going away, or is short of connections, or the
		// client is too eager: free this one rather than keep it alive for
		// another request.
		h.Set("Connection", "close")
	}
	w.WriteHeader(herr.Status)
	w.Write([]byte(herr.Message + "\n"))
}
