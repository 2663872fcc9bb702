package hub

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The event-loop mode (Options.EventLoop): a session's messages come from
// websocket's event loop (Server.AcceptEvents) as callbacks instead of from
// a reading goroutine, so that on Linux an idle client holds no goroutine
// and no read buffer. The session is the same as the goroutine mode's
// (session.go): the callbacks hand the first message to connect and the
// others to command, and the end to finish; only the reader's work is
// done differently, here.

// sessionEvents is what a session needs in the event-loop mode.
type sessionEvents struct {
	// ctx is the commands' context; stop ends it, when the connection has
	// ended (OnClose), before the session waits for its commands.
	ctx  context.Context
	stop context.CancelFunc
	// bound sets session.c once: from the handler once AcceptEvents
	// returns, or from a callback of the event loop that comes before.
	bound sync.Once
	// connect is where the connect phase is: connectAwaited until the
	// first message or the timeout, whichever comes first, takes it.
	connect atomic.Int32

	mu    sync.Mutex
	timer *time.Timer // ConnectTimeout's, while connectAwaited
	ended bool        // OnClose came: no timer to start
	// endErr is why a callback closed the connection, for the end's log
	// line (OnClose's error would be the peer's answer to the close).
	// Touched by the callbacks only, one at a time.
	endErr error
}

// The phases of sessionEvents.connect.
const (
	connectAwaited int32 = iota
	connectReceived
	connectTimedOut
)

// serveEvents is ServeHTTP in the event-loop mode: it returns once the
// handshake is done, the connection left to the callbacks.
func (h *Hub) serveEvents(w http.ResponseWriter, r *http.Request) {
	s := h.newSession(nil, r)
	ev := &sessionEvents{}
	ev.ctx, ev.stop = context.WithCancel(context.Background())
	s.events = ev
	s.cmds.start(ev.ctx, s.run)
	c, err := h.ws.AcceptEvents(w, r, websocket.Events{OnMessage: s.onMessage, OnClose: s.onClose})
	if err != nil {
		s.finish(ev.stop, err) // no callback comes: refused, or the handshake failed
		return
	}
	s.bind(c)
	ev.mu.Lock()
	if !ev.ended && ev.connect.Load() == connectAwaited {
		ev.timer = time.AfterFunc(h.opts.ConnectTimeout, s.connectTimerFired)
	}
	ev.mu.Unlock()
}

// bind gives the session its connection.
func (s *session) bind(c *websocket.Conn) {
	s.events.bound.Do(func() { s.c = c })
}

// onMessage is the connection's OnMessage: the goroutine mode's read loop,
// one message at a time.
func (s *session) onMessage(c *websocket.Conn, msg websocket.Message) error {
	s.bind(c)
	ev := s.events
	if !s.connectedAt.IsZero() {
		// While maxPendingCommands are pending this waits, holding one of
		// the event loop's workers, as the goroutine mode's reader waits:
		// until Shutdown at most, as nothing else ends a wait that the
		// broker does not.
		err := s.command(s.h.ctx, msg)
		if err != nil {
			ev.endErr = err
		}
		return err
	}
	if !ev.connect.CompareAndSwap(connectAwaited, connectReceived) {
		return nil // the connect timeout is closing the connection
	}
	ev.mu.Lock()
	if ev.timer != nil {
		ev.timer.Stop()
		ev.timer = nil // not kept for the life of the connection
	}
	ev.mu.Unlock()
	// The authentication hook runs here, on a worker of the event loop's
	// bounded pool: a slow one holds a worker while it runs.
	return s.connect(ev.ctx, msg)
}

// connectTimerFired closes a connection that sent nothing within
// ConnectTimeout, as readConnect does in the goroutine mode.
func (s *session) connectTimerFired() {
	if !s.events.connect.CompareAndSwap(connectAwaited, connectTimedOut) {
		return
	}
	var ce *websocket.CloseError
	if errors.As(s.connectTimedOut(), &ce) {
		s.closeConn(ce.Code, ce.Reason)
	}
}

// onClose is the connection's OnClose: the goroutine mode's handler
// returning.
func (s *session) onClose(c *websocket.Conn, err error) {
	s.bind(c)
	ev := s.events
	ev.mu.Lock()
	ev.ended = true
	if ev.timer != nil {
		ev.timer.Stop()
	}
	ev.mu.Unlock()
	if ev.endErr != nil {
		err = ev.endErr
	}
	s.finish(ev.stop, err)
}
