package websocket

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"sync"
	"time"
)

// Server is an http.Handler that serves WebSockets and keeps track of them,
// so that they can be listed, counted and closed when the program stops.
//
// http.Server.Shutdown does not close WebSockets: over HTTP/1.1 it forgets a
// connection once it is hijacked, and over HTTP/2 it waits for the streams'
// handlers, which run as long as their WebSocket does. Server.Shutdown sends
// every WebSocket a close frame (1001 going away by default), refuses new ones
// with 503 and waits for their handlers to end. Run both, the WebSocket drain
// beside the HTTP one, so that HTTP/2 streams can end while net/http waits for
// them:
//
//	ws := &websocket.Server{Handler: chat}
//	hs := &http.Server{Addr: ":8080", Handler: ws}
//	hs.RegisterOnShutdown(func() { ws.Shutdown(context.Background()) }) // starts the drain
//	...
//	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	defer cancel()
//	hs.Shutdown(ctx) // stops listening, waits for HTTP requests and HTTP/2 streams
//	ws.Shutdown(ctx) // waits for the WebSocket handlers; when ctx ends, drops what remains
//
// A Server must not be copied after first use. Its fields must not change
// once it serves.
type Server struct {
	// Handler runs for each connection, as Open runs it: the connection is
	// closed with the code its result gives when it returns, and ctx is
	// cancelled when the connection closes. Handler should read until Read
	// fails, so that it sees the close frame of Shutdown; the peer's echo of
	// it then comes back as a *CloseError with Remote set and ShutdownCode.
	// A nil Handler reads and discards messages until the connection ends
	// (for a server that only pushes, through All).
	Handler func(ctx context.Context, c *Conn) error

	// Options configure the handshake and the connections.
	Options AcceptOptions

	// ShutdownCode is the close code Shutdown sends. 0 means StatusGoingAway
	// (1001); StatusServiceRestart (1012) tells clients that the server
	// restarts and that they should reconnect, after a short wait.
	ShutdownCode StatusCode

	// ShutdownReason goes with ShutdownCode; "" gives the code's name
	// ("going away", "service restart").
	ShutdownReason string

	// DrainWindow, when positive, spreads Shutdown's close frames evenly
	// over this long, so that the clients of a busy server do not all
	// reconnect in the same millisecond. Connections still open when the
	// window ends have all been sent their close frame; Shutdown's ctx
	// bounds the window too.
	DrainWindow time.Duration

	// MaxConnections, when positive, is the most WebSockets the Server
	// holds at once. A request over it is refused before the handshake
	// with 503 Service Unavailable, Retry-After and a message that says
	// so, and Open returns a *HandshakeError that matches
	// ErrConnectionLimit. A request takes its place as it enters the
	// Server, before the upgrade, and keeps it until its connection has
	// ended (handler returned, connection closed); a failed handshake
	// frees it at once. So no connection is ever upgraded beyond the
	// limit, and no close code is needed for a limit hit after the
	// upgrade: it cannot happen.
	MaxConnections int

	// Limit, when set, is a cap this Server shares with others (see
	// ConnLimit), checked as MaxConnections is and besides it.
	Limit *ConnLimit

	// HandshakeRate, when set, limits how fast each client may open
	// WebSockets (see HandshakeRate): a request over it is refused with
	// 429 Too Many Requests before it takes a place under MaxConnections
	// and Limit. It may be shared with other Servers.
	HandshakeRate *HandshakeRate

	// Hooks observe the handshakes and the ends of connections, for
	// metrics. Stats gives the counts that need no event.
	Hooks ServerHooks

	mu       sync.Mutex
	conns    map[*Conn]bool // from the accepted handshake to the end; true while Handler runs
	running  int            // conns whose Handler runs
	places   int            // requests in Open, counted against MaxConnections
	ended    ServerStats    // totals of the connections that have ended
	closing  bool           // Shutdown was called: refuse new connections
	forced   chan struct{}  // closed when a Shutdown's ctx ended: drop, do not drain
	done     chan struct{}  // closed when handlers and closers have all ended
	force    sync.Once
	handlers sync.WaitGroup // one per ServeHTTP in flight
	closers  sync.WaitGroup // one per Conn.Close that the drain runs
}

// forcedGrace is how long Shutdown waits, once its ctx ended and it dropped
// the connections, for their handlers to notice and end.
const forcedGrace = time.Second

// ServeHTTP opens the WebSocket and runs Handler, as Open does, while the
// connection is tracked. Once Shutdown was called, or at MaxConnections, it
// answers 503 Service Unavailable with a Retry-After header instead; over
// the HandshakeRate, 429 Too Many Requests with Retry-After.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.Handler
	if h == nil {
		h = discard
	}
	s.Open(w, r, h)
}

// Open is the package's Open with s.Options, for a handler of the caller's
// own, such as a closure that sees the request, while s tracks the
// connection: it counts in Len, appears in All and is closed by Shutdown.
// Once Shutdown was called, or at MaxConnections, Open answers 503 Service
// Unavailable with a Retry-After header (over the HandshakeRate, 429 Too
// Many Requests) and returns a *HandshakeError with that status.
func (s *Server) Open(w http.ResponseWriter, r *http.Request, handler func(ctx context.Context, c *Conn) error) error {
	start := time.Now()
	if herr := s.enter(w, r); herr != nil {
		s.handshakeDone(r, time.Since(start), herr)
		return herr
	}
	defer s.leave()
	// The package's Open, with the connection tracked from its handshake
	// to its end, when the closing handshake is over too.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	c, err := accept(w, r, &s.Options, connConfig{ownCtx: ctx, onClose: cancel})
	accepted := time.Now()
	if err == nil {
		s.track(c) // before the hook: a handshake counted is a connection open
	}
	s.handshakeDone(r, accepted.Sub(start), err)
	if err != nil {
		return err
	}
	err = run(ctx, c, func(ctx context.Context, c *Conn) error {
		if err := s.add(c); err != nil {
			return err
		}
		defer s.remove(c)
		return handler(ctx, c)
	})
	s.end(c, r, accepted)
	return err
}

// enter counts a request in, taking its place under the limits. When it
// cannot, it answers the request (503 during shutdown, 429 over the
// HandshakeRate, 503 at the connection limit) and returns the refusal.
func (s *Server) enter(w http.ResponseWriter, r *http.Request) *HandshakeError {
	cause, wait := s.take(r)
	switch {
	case cause == nil:
		return nil
	case cause == ErrRateLimited:
		return refuseRateLimited(w, r, wait)
	}
	return refuseUnavailable(w, r, cause)
}

// take is enter's decision, under the lock: ErrShuttingDown,
// ErrRateLimited (with the wait until the client may try again),
// ErrConnectionLimit, or nil with the place taken.
func (s *Server) take(r *http.Request) (cause error, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrShuttingDown, 0
	}
	// Before the connection limit: a client over its rate is told so
	// (429, and when to retry) whether or not a place is free.
	if wait, ok := s.HandshakeRate.admit(r); !ok {
		return ErrRateLimited, wait
	}
	if s.MaxConnections > 0 && s.places >= s.MaxConnections {
		return ErrConnectionLimit, 0
	}
	if !s.Limit.acquire() {
		return ErrConnectionLimit, 0
	}
	s.places++
	s.handlers.Add(1)
	return nil, 0
}

// Reserve takes a place for a long-lived response that is not a WebSocket,
// such as an event stream, so that it counts against MaxConnections, Limit
// and HandshakeRate as a WebSocket does: each holds a socket and memory
// alike. When the Server will not take it, Reserve answers as Open does
// (503, or 429, with Retry-After) and returns the *HandshakeError;
// otherwise the caller must call release once the response has ended.
// Shutdown waits for a place to be released, as it waits for a Handler:
// end the response when shutdown begins. Hooks are not called, and Stats
// and Len do not count it: they describe WebSockets.
func (s *Server) Reserve(w http.ResponseWriter, r *http.Request) (release func(), err error) {
	if herr := s.enter(w, r); herr != nil {
		return nil, herr
	}
	var once sync.Once
	return func() { once.Do(s.leave) }, nil
}

// leave counts a request out, freeing its place.
func (s *Server) leave() {
	s.mu.Lock()
	s.places--
	s.mu.Unlock()
	s.Limit.release()
	s.handlers.Done()
}

func (s *Server) handshakeDone(r *http.Request, took time.Duration, err error) {
	hook := s.Hooks.Handshake
	if hook == nil {
		return
	}
	info := HandshakeInfo{Request: r, HTTPVersion: httpVersion(r), Err: err, Duration: took}
	var herr *HandshakeError
	switch {
	case err == nil:
		info.Status = acceptedStatus(info.HTTPVersion)
	case errors.As(err, &herr):
		info.Status = herr.Status
	}
	hook(info)
}

// track counts an accepted connection as open.
func (s *Server) track(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = make(map[*Conn]bool)
	}
	s.conns[c] = false
}

// end moves a connection that has ended from the open ones to the totals,
// in one step under the lock, so that Stats' totals never go back.
func (s *Server) end(c *Conn, r *http.Request, accepted time.Time) {
	st := c.Stats()
	s.mu.Lock()
	delete(s.conns, c)
	s.ended.Ended++
	s.ended.add(st)
	s.mu.Unlock()
	if hook := s.Hooks.End; hook != nil {
		hook(EndInfo{Request: r, HTTPVersion: httpVersion(r), Duration: time.Since(accepted), Stats: st})
	}
}

// add registers a connection whose handshake is done. A connection that
// completes its handshake after Shutdown took its list is closed at once
// instead, with the shutdown code (or dropped, when the shutdown is forced).
func (s *Server) add(c *Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		select {
		case <-s.forced:
			c.CloseNow()
		default:
		}
		code, reason := s.shutdownClose()
		return &CloseError{Code: code, Reason: reason}
	}
	s.conns[c] = true
	s.running++
	return nil
}

// remove counts out a connection whose Handler returned; it stays open
// (in Stats) until its closing handshake is over.
func (s *Server) remove(c *Conn) {
	s.mu.Lock()
	if s.conns[c] {
		s.conns[c] = false
		s.running--
	}
	s.mu.Unlock()
}

// live reports whether c's Handler runs.
func (s *Server) live(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[c]
}

// discard is the Handler of a Server without one.
func discard(ctx context.Context, c *Conn) error {
	for {
		if _, err := c.Read(ctx); err != nil {
			return err
		}
	}
}

// Len returns the number of live WebSocket connections: those whose
// handshake is done and whose Handler has not returned.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// All iterates over the live connections, as they were when iteration
// began: for a broadcast, or an admin page. A connection may close while
// the loop runs; its writes then fail with ErrClosed.
func (s *Server) All() iter.Seq[*Conn] {
	return func(yield func(*Conn) bool) {
		for _, c := range s.snapshot(false) {
			if !yield(c) {
				return
			}
		}
	}
}

// snapshot lists the connections whose Handler runs or, with all, every
// open one.
func (s *Server) snapshot(all bool) []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(all)
}

func (s *Server) snapshotLocked(all bool) []*Conn {
	conns := make([]*Conn, 0, len(s.conns))
	for c, running := range s.conns {
		if running || all {
			conns = append(conns, c)
		}
	}
	return conns
}

func (s *Server) shutdownClose() (StatusCode, string) {
	code := s.ShutdownCode
	if code == 0 {
		code = StatusGoingAway
	}
	reason := s.ShutdownReason
	if reason == "" {
		reason = statusNames[code]
	}
	return code, reason
}

// Shutdown stops accepting WebSockets (new ones get 503), sends every live
// connection a close frame with ShutdownCode (spread over DrainWindow when it
// is set) and waits for every Handler to return. It returns nil once they
// all have.
//
// When ctx ends first, Shutdown drops the remaining connections without a
// closing handshake (Conn.CloseNow), waits a moment for their handlers to
// return and returns ctx's error. A handler that ignores its closed
// connection may still be running then.
//
// Shutdown may be called more than once and from several goroutines: the
// first call starts the drain, and every call waits, bounded by its own ctx.
// Shutdown does not stop the HTTP server: see the Server's documentation for
// running it beside http.Server.Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	done, forced := s.startShutdown()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-done: // both were ready: the drain did finish
		return nil
	default:
	}
	s.force.Do(func() { close(forced) }) // stops the drain
	// Those whose Handler returned too: their closing handshake may wait
	// for a peer that does not answer.
	for _, c := range s.snapshot(true) {
		c.CloseNow()
	}
	t := time.NewTimer(forcedGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return ctx.Err()
}

// startShutdown starts the drain on its first call, and returns the channels
// that report its end and force it.
func (s *Server) startShutdown() (done, forced chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return s.done, s.forced
	}
	s.closing = true
	s.done = make(chan struct{})
	s.forced = make(chan struct{})
	conns := s.snapshotLocked(false)
	done, forced = s.done, s.forced
	handlersDone := make(chan struct{})
	drained := make(chan struct{})
	code, reason := s.shutdownClose()
	go func() {
		defer close(drained)
		s.drain(conns, code, reason, forced, handlersDone)
	}()
	go func() {
		s.handlers.Wait()
		close(handlersDone)
		<-drained
		// Only the drain starts closers, and it has ended: Wait is safe.
		s.closers.Wait()
		close(done)
	}()
	return done, forced
}

// drain closes conns, spread over DrainWindow. Each close runs in its own
// goroutine: Conn.Close waits for the peer's answer (up to CloseTimeout) and
// a write may block (up to WriteTimeout), and one slow peer must not hold up
// the others. The drain stops when Shutdown is forced, which drops the
// connections left, or when every handler has returned.
func (s *Server) drain(conns []*Conn, code StatusCode, reason string, forced, handlersDone <-chan struct{}) {
	start := time.Now()
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for i, c := range conns {
		if s.DrainWindow > 0 && i > 0 {
			at := start.Add(s.DrainWindow * time.Duration(i) / time.Duration(len(conns)))
			if d := time.Until(at); d > 0 {
				if t == nil {
					t = time.NewTimer(d)
				} else {
					t.Reset(d)
				}
				select {
				case <-t.C:
				case <-forced:
					return
				case <-handlersDone:
					return
				}
			}
		}
		if !s.live(c) {
			continue // it closed on its own meanwhile
		}
		s.closers.Go(func() { c.Close(code, reason) })
	}
}
