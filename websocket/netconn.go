package websocket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// NetConn returns a net.Conn that carries a byte stream in c's messages of
// type typ, for protocols written against net.Conn (HTTP, SSH, a database
// driver) tunnelled through a WebSocket. The net.Conn takes over c: do not
// read or write c directly afterwards.
//
// Read reads the stream across message boundaries, streaming each message
// (see Reader), so message sizes mean nothing to the reader; NetConn lifts
// c's read limit, since no message is held whole. A message of the other
// type fails the connection with 1003 (unsupported data). When the peer
// closes with 1000 or 1001, Read returns io.EOF; another close code is
// returned as its *CloseError.
//
// Each Write sends one message of type typ; an empty Write sends nothing.
// With MessageText every Write must be valid UTF-8 on its own, or the peer
// fails the connection. Close runs the closing handshake with 1000. Writes
// without a deadline are bounded by the connection's WriteTimeout.
//
// ctx bounds every Read and Write: once it is done they fail with its
// error. It does not close the connection; Close does.
//
// The deadlines interrupt blocked calls, as net.Conn requires, but a
// WebSocket cannot always survive the interruption. A Read interrupted
// while it waits for the next message leaves the connection intact, and a
// Write interrupted while it waits for another goroutine's Write does too.
// A Read interrupted in the middle of a message, or a Write interrupted
// while it writes, closes the connection: what was cut could not be told
// apart from what follows. A deadline that passes while no call is blocked
// makes later calls fail at once, until it is moved, and closes nothing.
// Calls that fail by a deadline return an error matching
// os.ErrDeadlineExceeded, a net.Error whose Timeout is true.
//
// LocalAddr and RemoteAddr are those of the underlying network connection
// or, when c has none (some HTTP clients do not expose it), an address
// whose network and string are "websocket".
func NetConn(ctx context.Context, c *Conn, typ MessageType) net.Conn {
	c.SetReadLimit(-1)
	nc := &netConn{c: c, typ: typ}
	nc.rd.parent, nc.wd.parent = ctx, ctx
	return nc
}

type netConn struct {
	c      *Conn
	typ    MessageType
	closed atomic.Bool // by Close

	readMu sync.Mutex // serialises Reads; guards msg
	msg    io.Reader  // the message being read; nil between messages
	rd, wd opDeadline
}

func (nc *netConn) Read(p []byte) (int, error) {
	nc.readMu.Lock()
	defer nc.readMu.Unlock()
	ctx, err := nc.rd.begin()
	if err != nil {
		return 0, nc.opError("read", err)
	}
	defer nc.rd.end()
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if nc.msg == nil {
			typ, r, err := nc.c.Reader(ctx)
			if err != nil {
				return 0, nc.readError(ctx, err)
			}
			if typ != nc.typ {
				ce := &CloseError{Code: StatusUnsupportedData, Reason: "expected " + nc.typ.String() + " messages, got " + typ.String()}
				nc.c.Close(ce.Code, ce.Reason)
				return 0, ce
			}
			nc.msg = r
		}
		n, err := nc.msg.Read(p)
		if err == io.EOF {
			nc.msg, err = nil, nil
		}
		if err != nil {
			return n, nc.readError(ctx, err)
		}
		if n > 0 {
			return n, nil
		}
		// An empty message, or the end of one: go on to the next.
	}
}

func (nc *netConn) readError(ctx context.Context, err error) error {
	if nc.closed.Load() {
		return nc.opError("read", net.ErrClosed)
	}
	if isDeadlineCancel(ctx, err) {
		return nc.opError("read", os.ErrDeadlineExceeded)
	}
	if errors.Is(err, io.EOF) {
		return io.EOF // the peer closed with 1000 or 1001: the stream's end
	}
	return err
}

func (nc *netConn) Write(p []byte) (int, error) {
	ctx, err := nc.wd.begin()
	if err != nil {
		return 0, nc.opError("write", err)
	}
	defer nc.wd.end()
	if len(p) == 0 {
		return 0, nil
	}
	if err := nc.c.Write(ctx, nc.typ, p); err != nil {
		return 0, nc.writeError(ctx, err)
	}
	return len(p), nil
}

func (nc *netConn) writeError(ctx context.Context, err error) error {
	switch {
	case nc.closed.Load():
		return nc.opError("write", net.ErrClosed)
	case isDeadlineCancel(ctx, err):
		return nc.opError("write", os.ErrDeadlineExceeded)
	case ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		// The connection's write error is sticky: this is the context of
		// an earlier Write that a deadline interrupted, which closed it.
		return nc.opError("write", fmt.Errorf("%w: an earlier write was interrupted by its deadline", net.ErrClosed))
	}
	return err
}

// isDeadlineCancel reports whether err is ctx's, ended by a deadline.
func isDeadlineCancel(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err()) && context.Cause(ctx) == os.ErrDeadlineExceeded
}

func (nc *netConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "websocket", Source: nc.LocalAddr(), Addr: nc.RemoteAddr(), Err: err}
}

// Close runs the closing handshake with 1000. A Read blocked in another
// goroutine reads the peer's answer and returns net.ErrClosed.
func (nc *netConn) Close() error {
	if nc.closed.Swap(true) {
		return nc.opError("close", net.ErrClosed)
	}
	err := nc.c.Close(StatusNormalClosure, "")
	nc.rd.close()
	nc.wd.close()
	return err
}

func (nc *netConn) LocalAddr() net.Addr  { return addrOrPlaceholder(nc.c.LocalAddr()) }
func (nc *netConn) RemoteAddr() net.Addr { return addrOrPlaceholder(nc.c.RemoteAddr()) }

// placeholderAddr stands in for an unknown address: net.Conn users call
// its methods without checking for nil.
type placeholderAddr struct{}

func (placeholderAddr) Network() string { return "websocket" }
func (placeholderAddr) String() string  { return "websocket" }

func addrOrPlaceholder(a net.Addr) net.Addr {
	if a == nil {
		return placeholderAddr{}
	}
	return a
}

func (nc *netConn) SetDeadline(t time.Time) error {
	nc.rd.set(t)
	nc.wd.set(t)
	return nil
}

func (nc *netConn) SetReadDeadline(t time.Time) error  { nc.rd.set(t); return nil }
func (nc *netConn) SetWriteDeadline(t time.Time) error { nc.wd.set(t); return nil }

// opDeadline is the deadline of one direction of a netConn. Calls run with
// a context that the deadline cancels only while a call is under way: a
// Read reuses its context for every call within a message, and cancelling
// it between calls would close the connection at the next one. A deadline
// that passes while no call runs marks the direction expired instead.
type opDeadline struct {
	parent context.Context

	mu      sync.Mutex
	timer   *time.Timer
	gen     uint64 // counts set calls, so that a stale timer does nothing
	expired bool
	closed  bool
	active  int // calls under way
	ctx     context.Context
	cancel  context.CancelCauseFunc
}

// begin starts a call and returns its context; end must follow.
func (d *opDeadline) begin() (context.Context, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return nil, net.ErrClosed
	case d.expired:
		return nil, os.ErrDeadlineExceeded
	}
	if d.ctx == nil {
		// Kept until a deadline cancels it, so that the connection's
		// context watch stays registered across calls.
		d.ctx, d.cancel = context.WithCancelCause(d.parent)
	}
	d.active++
	return d.ctx, nil
}

func (d *opDeadline) end() {
	d.mu.Lock()
	d.active--
	d.mu.Unlock()
}

func (d *opDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.gen++
	d.expired = false
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if t.IsZero() {
		return
	}
	if wait := time.Until(t); wait > 0 {
		gen := d.gen
		d.timer = time.AfterFunc(wait, func() {
			d.mu.Lock()
			if d.gen == gen {
				d.expireLocked()
			}
			d.mu.Unlock()
		})
		return
	}
	d.expireLocked()
}

func (d *opDeadline) expireLocked() {
	d.expired = true
	if d.active > 0 && d.cancel != nil {
		d.cancel(os.ErrDeadlineExceeded)
		d.ctx, d.cancel = nil, nil
	}
}

// close releases the timer and the context.
func (d *opDeadline) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.cancel != nil {
		d.cancel(net.ErrClosed)
		d.ctx, d.cancel = nil, nil
	}
}
