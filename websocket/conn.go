package websocket

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// Conn is a WebSocket connection.
//
// One goroutine at a time may read (Read, Reader); any number may write
// (SendText, SendBinary, Flush, Write, Writer, Ping) and Close or CloseNow at
// any time, also while another goroutine reads or writes. Control frames
// (pings, pongs, the peer's close) are handled while a goroutine reads, so
// every connection should have one reading.
type Conn struct {
	t       transport
	cfg     *settings // shared with connections of equal settings: read-only
	deflate *deflater // permessage-deflate, when negotiated
	rare    *connRare // nil unless the connection has any of it

	// Reading; owned by whoever holds readSem.
	readLimit atomic.Int64
	readSem   sem
	rb        readBuffer
	rs        readState
	readErr   error         // sticky: once reading failed it stays failed
	msgsIn    atomic.Uint64 // data messages begun, and the current one's number; bytes are counted by rb

	// Writing. msgSem is held for the whole of a data message, so that a
	// fragmented message from Writer is never interleaved with another one;
	// wmu is held for each frame and guards the pending buffer and state.
	msgSem   sem
	wmu      sync.Mutex
	wbuf     *[]byte       // pending frames not yet written; nil when empty
	werr     error         // sticky write error
	msgsOut  atomic.Uint64 // data messages handed to the queue or the transport
	bytesOut atomic.Uint64 // bytes the transport took

	// Closing.
	closeRcvd     signal        // fired when the peer's close frame was read
	peerClose     *CloseError   // set before closeRcvd fires
	closed        signal        // fired when the transport is closed
	closeSentCode atomic.Int32  // of the close frame sent, once it was written
	closedBy      atomic.Uint32 // a ClosedBy: the side whose close frame came first
	closeOnce     sync.Once
	client        bool // read-only; beside closeOnce, where padding would be
	closeSent     bool // under wmu

	// ev is set when the connection's messages go to Events callbacks
	// rather than to a reading goroutine (AcceptEvents, events.go).
	ev *eventsState

	// writeCtx interrupts a write when its context ends; made by the first
	// write that has to wait under a context that can end (under wmu).
	writeCtx *deadlineWatcher

	pings atomic.Pointer[pingWaiters] // made by the first Ping (ping.go)
}

// connRare is what only some connections have: a subprotocol, Open's
// context, keepalive. Kept out of Conn, which an idle connection keeps for
// its whole life: inline, these 56 bytes would move every Conn up a size
// class (TestConnSizeClass).
type connRare struct {
	subprotocol string

	// ownCtx is the context Open gives the handler, which ends only when
	// the connection closes: a Read under it needs no watching.
	ownCtx  context.Context
	onClose func() // run once when the transport closes (Open's cancel)

	alive      *keepaliveState            // with keepalive only (keepalive.go)
	closeCause atomic.Pointer[CloseError] // why keepalive dropped the connection, when it did
}

// connSizeClass is the allocation size class Conn must fit in: every idle
// connection holds one, whatever its mode.
const connSizeClass = 384

// connConfig is everything a Conn is made of, complete before the Conn
// exists: no goroutine sees a Conn that is still being set up.
type connConfig struct {
	t           transport
	client      bool
	subprotocol string
	opts        *Options
	deflate     *deflater
	prefix      []byte // bytes read past the handshake, to be read first

	// Open's context for the handler, ended by onClose when the
	// connection closes.
	ownCtx  context.Context
	onClose func()

	events *eventsState // AcceptEvents
}

func newConn(cfg connConfig) *Conn {
	c := &Conn{
		t:       cfg.t,
		client:  cfg.client,
		cfg:     sharedSettings(cfg.opts.resolve()),
		deflate: cfg.deflate,
		ev:      cfg.events,
	}
	keepalive := c.cfg.pingInterval > 0
	if cfg.subprotocol != "" || cfg.ownCtx != nil || cfg.onClose != nil || keepalive {
		c.rare = &connRare{subprotocol: cfg.subprotocol, ownCtx: cfg.ownCtx, onClose: cfg.onClose}
	}
	c.readLimit.Store(c.cfg.readLimit)
	c.rb.setSource(cfg.t)
	c.rb.preload(cfg.prefix)
	// Only now may anything else see the connection.
	if keepalive {
		c.rare.alive = &keepaliveState{index: -1}
		keepalives.add(c)
	}
	return c
}

// isOwnCtx reports whether ctx is Open's context for the handler, which
// needs no watching.
func (c *Conn) isOwnCtx(ctx context.Context) bool {
	return c.rare != nil && ctx == c.rare.ownCtx
}

// closeCause is why the connection was dropped without a close frame from
// the peer, when keepalive dropped it; nil otherwise.
func (c *Conn) closeCause() *CloseError {
	if c.rare == nil {
		return nil
	}
	return c.rare.closeCause.Load()
}

// Subprotocol returns the subprotocol chosen in the handshake, or "".
func (c *Conn) Subprotocol() string {
	if c.rare == nil {
		return ""
	}
	return c.rare.subprotocol
}

// SetReadLimit sets the largest message Read and Reader accept from now on
// (-1: no limit). A bigger message fails the connection with close code 1009.
func (c *Conn) SetReadLimit(n int64) { c.readLimit.Store(n) }

// RemoteAddr returns the peer's network address; an address whose Network
// is "unknown" when it is not known.
func (c *Conn) RemoteAddr() net.Addr { return c.t.RemoteAddr() }

// LocalAddr returns the local network address; an address whose Network
// is "unknown" when it is not known.
func (c *Conn) LocalAddr() net.Addr { return c.t.LocalAddr() }

// CloseNow closes the connection at once, without a closing handshake.
// Blocked reads and writes return.
func (c *Conn) CloseNow() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		err = c.t.Close()
		c.closed.fire()
		if c.cfg.pingInterval > 0 {
			keepalives.remove(c)
		}
		if c.rare != nil && c.rare.onClose != nil {
			c.rare.onClose()
		}
		if c.ev != nil {
			c.ev.connClosed(c)
		}
	})
	return err
}

func (c *Conn) isClosed() bool { return c.closed.fired() }

// lockSem takes one of the connection's semaphores, giving up when ctx is
// done or the connection closes. The fast path costs one compare-and-swap.
func (c *Conn) lockSem(ctx context.Context, s *sem) error {
	for {
		wake := s.tryLockOrWait()
		if wake == nil {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closed.done():
			return ErrClosed
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// beginRead makes ctx's end interrupt the reads of one read call, until
// c.t.endRead, and reports whether ctx has already ended. The connection's
// own context needs no watching: it ends only when the connection closes,
// which ends every read anyway.
func (c *Conn) beginRead(ctx context.Context) error {
	if c.isOwnCtx(ctx) || ctx.Done() == nil {
		c.t.beginRead(nil)
		return nil
	}
	c.t.beginRead(ctx)
	return ctx.Err()
}

// signal is an event that happens once, with a channel closed when it
// happens for whoever waits. The channel is made only when someone waits:
// an idle connection holds none (a channel is 96 bytes, and a connection has
// two signals).
type signal struct {
	ch atomic.Pointer[chan struct{}] // firedChan once fired
}

// firedChan is every fired signal's channel, closed from the start.
var firedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// fire makes the signal happen; it reports false if it already had.
func (s *signal) fire() bool {
	old := s.ch.Swap(&firedChan)
	if old == &firedChan {
		return false
	}
	if old != nil {
		close(*old)
	}
	return true
}

func (s *signal) fired() bool { return s.ch.Load() == &firedChan }

// done returns a channel that is closed when the signal fires.
func (s *signal) done() <-chan struct{} {
	if p := s.ch.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{})
	if s.ch.CompareAndSwap(nil, &ch) {
		return ch // fire will close it
	}
	return *s.ch.Load() // another waiter's, or firedChan
}
