package websocket

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Events receives a connection's messages from the event loop instead of a
// reading goroutine (AcceptEvents).
type Events struct {
	// OnMessage is called with each data message, in order, one at a time
	// per connection. msg.Data is valid only until OnMessage returns. A
	// non-nil error closes the connection as a handler's error does in
	// Open (a *CloseError's code, else 1011). A nil OnMessage discards
	// messages.
	OnMessage func(c *Conn, msg Message) error

	// OnClose is called once when the connection has ended, with why (a
	// *CloseError, errors.As-able; a 1000 or 1001 from the peer matches
	// io.EOF, as Read's does). It is not called while OnMessage runs.
	OnClose func(c *Conn, err error)
}

var errEventsRead = errors.New("websocket: the connection's messages go to its Events (AcceptEvents): Read, Reader and ReadInto are not available")

// AcceptEvents accepts the WebSocket as Accept does and returns once the
// handshake is done (over HTTP/2, see below); its messages then go to ev.
// Read, Reader and ReadInto on such a Conn return an error saying so;
// writing (SendText, Flush, Write, Ping) and closing work as on any Conn.
//
// On Linux, a connection over a plain socket (HTTP/1.1 without TLS) waits
// for its next message in an event loop: it holds no goroutine and no
// buffer, and a small pool of goroutines, started on demand, runs the
// callbacks; over TCP it keeps only the socket's descriptor, not package
// net's connection (LocalAddr and RemoteAddr answer as on any Conn). Over TLS, and on other platforms, the connection has a reading
// goroutine that calls the same callbacks. Over HTTP/2, whose stream lives
// only as long as the handler, that goroutine is the handler's: there
// AcceptEvents returns when the connection has ended, OnClose called.
// Pings, pongs and close frames are handled as a reading goroutine handles
// them; Close waits for the peer's close frame, except when called while an
// OnMessage of the event loop runs (then the loop finishes the closing
// handshake, and drops the connection after CloseTimeout). CloseRead
// returns a context that ends with the connection and starts no reading.
//
// OnMessage should not block for long: the pool is bounded, and a callback
// that waits holds one of its goroutines. A write that blocks (a slow peer)
// is bounded by WriteTimeout. From OnMessage, MessageReady tells whether
// the next message is in already, so that answers to messages that came
// together can share one Flush.
func AcceptEvents(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, ev Events) (*Conn, error) {
	st := newEventsState(ev)
	c, err := accept(w, r, opts, connConfig{events: st})
	if err != nil {
		return nil, err
	}
	c.startEvents(r.ProtoMajor == 2)
	return c, nil
}

// AcceptEvents is the package's AcceptEvents with s.Options, while s tracks
// the connection as it tracks Open's: it counts in Len, appears in All, is
// closed by Shutdown (which waits for it to end), counts against
// MaxConnections, and Hooks and Stats see it. Refused requests are answered
// as Open answers them.
func (s *Server) AcceptEvents(w http.ResponseWriter, r *http.Request, ev Events) (*Conn, error) {
	start := time.Now()
	if herr := s.enter(w, r); herr != nil {
		s.handshakeDone(r, time.Since(start), herr)
		return nil, herr
	}
	st := newEventsState(ev)
	c, err := accept(w, r, &s.Options, connConfig{events: st})
	accepted := time.Now()
	if err == nil {
		s.track(c)
	}
	s.handshakeDone(r, accepted.Sub(start), err)
	if err != nil {
		s.leave()
		return nil, err
	}
	// The request is kept for the End hook only: an idle connection
	// should not pin its headers for nothing.
	req := r
	if s.Hooks.End == nil {
		req = nil
	}
	st.onEnd = func(c *Conn) {
		s.remove(c)
		s.end(c, req, accepted)
		s.leave()
	}
	var ce *CloseError
	if errors.As(s.add(c), &ce) {
		c.closeWithoutWaiting(ce.Code, ce.Reason) // Shutdown began during the handshake
	}
	c.startEvents(r.ProtoMajor == 2)
	return c, nil
}

// eventsState is an AcceptEvents connection's part: its callbacks and who
// serves it. One goroutine at a time serves a connection (reads it, calls
// its callbacks): busy says one does, again that it must look once more
// before it stops.
type eventsState struct {
	ev    Events
	onEnd func(c *Conn) // the Server's accounting, after OnClose

	mu       sync.Mutex
	busy     bool
	again    bool
	ended    bool // the connection closed (CloseNow)
	hup      bool // the poller reported the peer's FIN (or an error)
	notified bool // OnClose was called
	timer    *time.Timer

	// closing: a callback's error closed the connection; the messages that
	// still come before the peer's close frame are dropped, as Open drops
	// them once its handler returned. Touched by the serving goroutine.
	closing bool
	// inCallback is set while the event loop runs OnMessage, so that
	// Close called from it does not wait for what only the loop can read.
	inCallback atomic.Bool
	// onLoop: served by the event loop, not by a goroutine of its own.
	onLoop atomic.Bool

	loop loopState // eventloop_linux.go: the poller's registration

	// partial is the data of a message partly in, from messageBufferPool;
	// nil between messages. Touched by the serving goroutine.
	partial *[]byte
}

func newEventsState(ev Events) *eventsState {
	// Busy from the start: the connection is served once startEvents runs.
	return &eventsState{ev: ev, busy: true}
}

// startEvents hands an accepted connection to the event loop or, where the
// loop cannot serve it, to a goroutine of its own. An HTTP/2 stream lives
// only as long as its handler: the handler's goroutine serves it, and
// returns when it has ended.
func (c *Conn) startEvents(http2 bool) {
	switch {
	case http2:
		handlerReturned := c.t.boundToHandler()
		c.serveGoroutine()
		handlerReturned()
	case c.rb.raw != nil && startLoop(c):
	default:
		go c.serveGoroutine()
	}
}

// serveGoroutine is the fallback: a reading goroutine that calls the
// callbacks, for TLS, HTTP/2 and platforms without the event loop.
func (c *Conn) serveGoroutine() {
	var buf []byte // msg.Data is the callback's only until it returns
	for {
		msg, err := c.readWhole(context.Background(), buf)
		if err != nil {
			break // endRead closed the connection
		}
		c.deliver(msg)
		buf = msg.Data
	}
	if c.serveDone() {
		c.serve()
	}
}

// connClosed runs in CloseNow. OnClose is called by whoever serves the
// connection once it stops, so never during OnMessage; with nobody serving
// it, a worker of the loop is asked to.
func (st *eventsState) connClosed(c *Conn) {
	st.mu.Lock()
	st.loop.remove()
	st.ended = true
	st.mu.Unlock()
	if st.onLoop.Load() {
		c.schedule(false)
	}
}

// schedule has a worker serve c, unless one serves it already; then that
// one looks again before it stops. hup: the poller saw the peer's FIN or
// an error.
func (c *Conn) schedule(hup bool) {
	st := c.ev
	st.mu.Lock()
	st.hup = st.hup || hup
	if st.busy {
		st.again = true
		st.mu.Unlock()
		return
	}
	st.busy = true
	st.mu.Unlock()
	eventWorkers.submit(c)
}

// serve runs on a worker: it reads what the socket holds and hands the
// parser what it can take, or, once the connection has closed, calls
// OnClose.
func (c *Conn) serve() {
	for {
		c.ev.mu.Lock()
		ended := c.ev.ended
		c.ev.mu.Unlock()
		if !ended && c.serveReady() {
			return // a goroutine of its own finishes the connection
		}
		if !c.serveDone() {
			return
		}
	}
}

// serveDone ends a turn of serving. It reports whether the connection must
// be served once more (it was scheduled meanwhile); otherwise, when the
// connection has ended, it calls OnClose.
func (c *Conn) serveDone() (again bool) {
	st := c.ev
	st.mu.Lock()
	if st.again {
		st.again = false
		st.mu.Unlock()
		return true
	}
	st.busy = false
	notify := st.ended && !st.notified
	if notify {
		st.notified = true
		st.loop.remove() // in case it closed before it was registered
		if st.timer != nil {
			st.timer.Stop()
		}
	}
	st.mu.Unlock()
	if notify {
		c.rb.r = c.rb.w
		c.rb.releaseIdle()
		err := c.readErr
		if err == nil {
			err = c.endCause()
		}
		if st.ev.OnClose != nil {
			st.ev.OnClose(c, err)
		}
		if st.onEnd != nil {
			st.onEnd(c)
		}
	}
	return false
}

// endCause says why a connection closed that no read failed on.
func (c *Conn) endCause() *CloseError {
	if c.peerClosed() {
		return c.peerClose
	}
	if cause := c.closeCause(); cause != nil {
		return cause
	}
	return &CloseError{Code: StatusAbnormalClosure, Reason: "connection closed"}
}

// serveReady reads what the socket holds and parses it, until a read comes
// back short (the socket was drained), then waits for the poller again. It
// reports whether it handed the end of the connection to a goroutine of its
// own.
func (c *Conn) serveReady() (handedOff bool) {
	need := 0
	c.ev.mu.Lock()
	hup := c.ev.hup
	c.ev.mu.Unlock()
	for {
		n, rerr := c.rb.readAvailable(need)
		var err error
		need, err = c.parseBuffered()
		if err == nil && rerr != nil {
			err = rerr
			if err == io.EOF && c.rb.buffered() > 0 {
				err = io.ErrUnexpectedEOF
			}
		}
		if err != nil {
			return c.endServe(err)
		}
		// A short read drained the socket: what comes next is a new edge.
		// Not so the peer's FIN, reported once with the data before it:
		// once it was, read on until the end of the stream shows.
		if n == 0 || c.rb.w < len(c.rb.buf) && !hup {
			break
		}
	}
	c.rb.releaseIdle()
	return false
}

// endServe ends reading after err, as endRead does for a reading goroutine.
// A protocol error is answered with a close frame and the connection is
// drained for up to a second (fail): that waits, so it runs on a goroutine
// of its own, reading as a goroutine reads, and the worker moves on.
func (c *Conn) endServe(err error) (handedOff bool) {
	var pe *protocolError
	if errors.As(err, &pe) {
		c.rb.nonblocking = false
		go func() {
			c.endRead(context.Background(), err)
			if c.serveDone() {
				c.serve()
			}
		}()
		return true
	}
	c.endRead(context.Background(), err)
	return false
}

// parseBuffered runs the parser (read.go) over the buffered bytes, as far
// as they go: it stops where they end (errWouldBlock, which every step of
// the parser returns before it consumes anything), keeping a message that
// is partly in, and goes on from there on the next turn. So pings between
// fragments are answered as they come, and a text message's bad UTF-8 or a
// header over the read limit fails the connection before the rest arrives,
// as with a reading goroutine. It returns how many bytes the buffer must
// hold for the next step, when that is more than a pooled buffer.
func (c *Conn) parseBuffered() (need int, err error) {
	st := c.ev
	for {
		end := c.rb.w
		if !c.rs.inMessage {
			window, need := c.inflateWindow()
			if window == 0 && need > 0 {
				return need, nil
			}
			// The parser sees the window alone; in the nonblocking mode it
			// never reads, so the rest is where it was when it returns.
			c.rb.w = c.rb.r + window
			err = c.nextFrame()
			c.rb.w = end
			if err == errWouldBlock {
				return need, nil // control frames, if any, were handled
			}
			if err != nil {
				return 0, err
			}
			st.partial = messageBufferPool.Get().(*[]byte)
			*st.partial = (*st.partial)[:0]
		}
		data, err := c.readRest(*st.partial)
		*st.partial = data
		if err == errWouldBlock {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		c.deliver(Message{Type: c.rs.msgType(), Data: data})
		// As Read: after a large message the next read takes the large
		// buffer, so that the next such message comes in one read.
		c.rb.wantLarge(c.rs.size + maxHeaderSize)
		if cap(data) <= maxPooledMessageBuffer {
			*st.partial = data[:0]
			messageBufferPool.Put(st.partial)
		}
		st.partial = nil
	}
}

// The data of the messages OnMessage is given, pooled: it is OnMessage's
// only until it returns. Held only while a message is partly in.
const maxPooledMessageBuffer = 64 << 10

var messageBufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// inflateWindow returns how much of the buffered input the parser may be
// given at the start of a message: all of it, unless the next data message
// is compressed and not yet buffered whole. The inflater cannot stop
// half-way and go on later, so a compressed message is parsed only once its
// last frame is in (control frames before it are handled at once; those
// between its fragments, when it is whole). Then the window ends where that
// message begins, and need is what the buffer must hold to take it whole.
// This is a walk over frame headers, no second parser: a header the parser
// refuses ends the walk, and the parser refuses it.
func (c *Conn) inflateWindow() (window, need int) {
	b := c.rb.bytes()
	if c.deflate == nil {
		return len(b), 0
	}
	start, off := -1, 0 // start: where the compressed message begins
	var size int64
	for {
		h, hlen, ok, err := bufferedFrameHeader(b[off:])
		if !ok || err != nil {
			break
		}
		compressed, err := c.checkHeader(h, start >= 0, size)
		if err != nil || (start < 0 && !h.opcode.isControl() && !compressed) {
			return len(b), 0 // refused, or an uncompressed message: the parser streams it
		}
		if start < 0 && compressed {
			start = off
		}
		if h.length > int64(maxInt-off-hlen) {
			return off, maxInt // only with no read limit: never bufferable
		}
		end := off + hlen + int(h.length)
		if end > len(b) {
			if start < 0 {
				return len(b), 0 // a control frame partly in: the parser waits for it
			}
			return start, end - start
		}
		off = end
		if start >= 0 && !h.opcode.isControl() {
			size += h.length
			if h.fin {
				return len(b), 0 // whole
			}
		}
	}
	if start < 0 {
		return len(b), 0
	}
	return start, off + 2 - start
}

const maxInt = int(^uint(0) >> 1)

// deliver gives OnMessage a message, and closes the connection as Open does
// when it returns an error.
func (c *Conn) deliver(msg Message) {
	st := c.ev
	if st.closing || st.ev.OnMessage == nil {
		return
	}
	st.inCallback.Store(true)
	err := st.ev.OnMessage(c, msg)
	st.inCallback.Store(false)
	if err == nil {
		return
	}
	st.closing = true
	code, reason := StatusInternalError, "internal error"
	var ce *CloseError
	if errors.As(err, &ce) {
		code, reason = ce.Code, ce.Reason
		if ce.Remote || c.isClosed() {
			reason = ""
		}
	}
	if st.onLoop.Load() {
		c.closeWithoutWaiting(code, reason)
	} else {
		c.Close(code, reason) // the reading goroutine itself: Close reads the answer
	}
}

// closeWithoutWaiting sends the close frame and leaves the rest of the
// closing handshake to whoever serves the connection, which reads the
// peer's answer: the loop's worker must not wait for what only it can
// read. The connection is dropped if the answer is not in within
// CloseTimeout.
func (c *Conn) closeWithoutWaiting(code StatusCode, reason string) {
	if code != StatusNoStatusRcvd && !validWireCode(code) {
		c.CloseNow()
		return
	}
	if err := c.writeClose(code, reason); err != nil {
		c.CloseNow()
		return
	}
	st := c.ev
	st.mu.Lock()
	if st.timer == nil && !st.notified {
		st.timer = time.AfterFunc(c.cfg.closeTimeout, func() { c.CloseNow() })
	}
	st.mu.Unlock()
}

// inLoopCallback reports whether an OnMessage of the event loop may be
// running, from which the caller may be called: then Close must not wait
// for the peer's close frame, which the loop alone reads, and MessageReady
// looks at what the loop buffered.
func (c *Conn) inLoopCallback() bool {
	return c.ev != nil && c.ev.onLoop.Load() && c.ev.inCallback.Load()
}

// closeReadEvents is CloseRead for an AcceptEvents connection, which the
// event loop or its goroutine reads already: the context ends when the
// connection closes, or when ctx does.
func (c *Conn) closeReadEvents(ctx context.Context) context.Context {
	done, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-c.closed.done():
			cancel(c.endCause())
		case <-ctx.Done():
			cancel(context.Cause(ctx))
		}
	}()
	return closeReadContext{Context: done, parent: ctx}
}
