package websocket

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// Open accepts a WebSocket request, runs handler with the connection and
// closes it properly whatever the handler returns:
//
//   - nil: close code 1000;
//   - an error from Read after the peer closed: the peer's code was already
//     echoed, and a normal close (1000, 1001) counts as a clean end;
//   - a *CloseError the handler built: its code and reason;
//   - any error while r's context is cancelled (the server shutting down):
//     1001 going away;
//   - any other error: 1011 internal error (the error text is not sent).
//
// The handler's ctx is cancelled when the connection closes. Open returns the
// handler's error, or nil for a clean end, or the handshake error.
//
// The handler runs in net/http's goroutine for the request, which keeps its
// buffers and the request for the connection's life: about 5 KiB more per
// idle connection than Accept followed by a goroutine of your own, which
// lets them go when ServeHTTP returns (measured by bench/: 17.3 KiB against
// 11.6 KiB per idle connection at 1000 connections). For tens of thousands
// of mostly idle connections, prefer Accept.
func Open(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, handler func(ctx context.Context, c *Conn) error) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	c, err := accept(w, r, opts, cancel)
	if err != nil {
		return err
	}

	if s, ok := c.t.(*http2Stream); ok {
		defer endStreamWhenClosed(c, s)()
	}
	herr := handler(ctx, c)

	var ce *CloseError
	switch {
	case errors.As(herr, &ce):
		if ce.Remote || c.isClosed() {
			c.Close(ce.Code, "") // the handshake is over: this only closes
		} else {
			c.Close(ce.Code, ce.Reason)
		}
	case r.Context().Err() != nil:
		c.Close(StatusGoingAway, "server shutting down")
	case herr == nil:
		c.Close(StatusNormalClosure, "")
	default:
		c.Close(StatusInternalError, "internal error")
	}
	c.CloseNow()
	if errors.Is(herr, io.EOF) || r.Context().Err() != nil && errors.Is(herr, r.Context().Err()) {
		return nil // the peer left normally, or the server is shutting down
	}
	return herr
}

// streamGrace is how long a closed WebSocket's HTTP/2 stream stays open
// while the handler goes on: long enough for the peer to read our close
// frame, which a reset could make it drop.
const streamGrace = time.Second

// endStreamWhenClosed ends the HTTP/2 stream of a connection that closed
// while its handler keeps running. Over TCP the connection's socket is
// closed; a stream only ends when the handler returns, so it is reset after
// streamGrace instead. It returns the function to call as the handler
// returns; resetting is safe only before then, which the mutex ensures.
func endStreamWhenClosed(c *Conn, s *http2Stream) (handlerReturned func()) {
	var mu sync.Mutex
	returned := false
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-c.closed:
		}
		t := time.NewTimer(streamGrace)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
		}
		mu.Lock()
		if !returned {
			s.kill()
		}
		mu.Unlock()
	}()
	return func() {
		mu.Lock()
		returned = true
		mu.Unlock()
		close(done)
	}
}
