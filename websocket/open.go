package websocket

import (
	"context"
	"errors"
	"io"
	"net/http"
)

// Open accepts a WebSocket request, runs handler with the connection and
// closes it properly whatever the handler returns:
//
//   - nil: close code 1000;
//   - an error from Read after the peer closed: the peer's code was already
//     echoed, and a normal close (1000, 1001) counts as a clean end;
//   - a *CloseError the handler built: its code and reason;
//   - any other error: 1011 internal error (the error text is not sent).
//
// The handler's ctx carries the request context's values and ends when the
// connection closes, whoever closes it; a Read under it costs nothing to
// watch. The request context's own cancellation is not followed: net/http
// does not cancel it when the server shuts down (http.Server.Shutdown does
// not know hijacked connections), and over HTTP/2 it ends with the stream,
// which the connection notices by itself. To close connections when the
// server stops, serve them with a Server and call its Shutdown.
//
// Open returns the handler's error, or nil for a clean end, or the
// handshake error.
//
// The handler runs in net/http's goroutine for the request: over HTTP/1.1
// the connection's, over HTTP/2 the stream's. It is the only goroutine an
// idle connection has (keepalive adds none); see the package documentation
// for what a connection costs.
func Open(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, handler func(ctx context.Context, c *Conn) error) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	c, err := accept(w, r, opts, connConfig{ownCtx: ctx, onClose: cancel})
	if err != nil {
		return err
	}
	return run(ctx, c, handler)
}

// run runs handler on a connection accepted for it, as Open does.
func run(ctx context.Context, c *Conn, handler func(ctx context.Context, c *Conn) error) error {
	handlerReturned := c.t.boundToHandler()
	defer handlerReturned()

	herr := handler(ctx, c)

	var ce *CloseError
	switch {
	case errors.As(herr, &ce):
		if ce.Remote || c.isClosed() {
			c.Close(ce.Code, "") // the handshake is over: this only closes
		} else {
			c.Close(ce.Code, ce.Reason)
		}
	case herr == nil:
		c.Close(StatusNormalClosure, "")
	default:
		c.Close(StatusInternalError, "internal error")
	}
	c.CloseNow()
	if errors.Is(herr, io.EOF) {
		return nil // the peer left normally
	}
	return herr
}
