package websocket

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// transport is what a connection runs over: a net.Conn after an HTTP/1.1
// upgrade, and (later) an HTTP/2 stream, which is not a net.Conn.
type transport interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Conn is a WebSocket connection.
//
// One goroutine at a time may read (Read, Reader); any number may write
// (SendText, SendBinary, Flush, Write, Writer, Ping) and Close or CloseNow at
// any time, also while another goroutine reads or writes. Control frames
// (pings, pongs, the peer's close) are handled while a goroutine reads, so
// every connection should have one reading.
type Conn struct {
	t           transport
	addr        net.Conn // for LocalAddr/RemoteAddr; may be nil
	client      bool
	subprotocol string
	cfg         settings
	readLimit   atomic.Int64

	// Reading; owned by whoever holds readSem.
	readSem chan struct{}
	rb      readBuffer
	rs      readState
	ctrl    [maxControlPayload]byte
	readErr error     // sticky: once reading failed it stays failed
	deflate *deflater // permessage-deflate, when negotiated
	readCtx deadlineWatcher

	// Writing. msgSem is held for the whole of a data message, so that a
	// fragmented message from Writer is never interleaved with another one;
	// wmu is held for each frame and guards the pending buffer and state.
	msgSem    chan struct{}
	wmu       sync.Mutex
	wbuf      *[]byte  // pending frames not yet written; nil when empty
	wvec      writeVec // the buffers of a writev, kept here so it allocates nothing
	werr      error    // sticky write error
	writeCtx  deadlineWatcher
	closeSent bool

	// Closing.
	closeRcvd     chan struct{} // closed when the peer's close frame was read
	peerClose     *CloseError   // set before closeRcvd is closed
	closeRcvdOnce sync.Once
	closed        chan struct{} // closed when the transport is closed
	closeOnce     sync.Once
	onClose       func() // run once when the transport closes (Open's cancel)

	pingMu  sync.Mutex
	pings   map[uint64]chan struct{}
	pingSeq uint64
}

func newConn(t transport, addr net.Conn, client bool, subprotocol string, o *Options, onClose func()) *Conn {
	c := &Conn{
		t:           t,
		addr:        addr,
		client:      client,
		subprotocol: subprotocol,
		cfg:         o.resolve(),
		readSem:     make(chan struct{}, 1),
		msgSem:      make(chan struct{}, 1),
		closeRcvd:   make(chan struct{}),
		closed:      make(chan struct{}),
		onClose:     onClose,
	}
	c.readLimit.Store(c.cfg.readLimit)
	c.readCtx.set = t.SetReadDeadline
	c.writeCtx.set = t.SetWriteDeadline
	c.rb.setSource(t)
	if c.cfg.pingInterval > 0 {
		go c.keepalive()
	}
	return c
}

// Subprotocol returns the subprotocol chosen in the handshake, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// SetReadLimit sets the largest message Read and Reader accept from now on
// (-1: no limit). A bigger message fails the connection with close code 1009.
func (c *Conn) SetReadLimit(n int64) { c.readLimit.Store(n) }

// RemoteAddr returns the peer's network address, if known.
func (c *Conn) RemoteAddr() net.Addr {
	if c.addr == nil {
		return nil
	}
	return c.addr.RemoteAddr()
}

// LocalAddr returns the local network address, if known.
func (c *Conn) LocalAddr() net.Addr {
	if c.addr == nil {
		return nil
	}
	return c.addr.LocalAddr()
}

// CloseNow closes the connection at once, without a closing handshake.
// Blocked reads and writes return.
func (c *Conn) CloseNow() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		err = c.t.Close()
		close(c.closed)
		c.readCtx.clear()
		c.writeCtx.clear()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// lockSem takes a one-slot semaphore, giving up when ctx is done or the
// connection closes. The fast path costs one channel send.
func (c *Conn) lockSem(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return ErrClosed
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
