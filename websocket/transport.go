package websocket

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// transport is what a Conn runs over. There are two: a network connection
// taken over after an HTTP/1.1 upgrade (socketTransport, on both sides), and
// an HTTP/2 stream opened by an extended CONNECT (RFC 8441; streamTransport
// in http2_stream.go, with one end for the server and one for the client).
// The Conn above never asks which one it has.
type transport interface {
	io.Reader
	io.Writer

	// SetReadDeadline and SetWriteDeadline bound blocked reads and writes,
	// which then fail with a timeout error (net.Error). A zero time removes
	// the bound; moving a passed read deadline into the future makes the
	// transport readable again.
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error

	// beginRead makes the end of ctx interrupt blocked reads, as a passed
	// read deadline does, until endRead; nil interrupts nothing. It is
	// cheap to call with the same ctx again.
	beginRead(ctx context.Context)
	endRead()

	// closeWrite ends this side's byte stream after the close frame (a TCP
	// FIN, or the end of an HTTP/2 stream's data) while reading goes on.
	// Transports that cannot do it return nil.
	closeWrite() error

	// Close ends the Conn's use of the transport: blocked reads and writes
	// return.
	Close() error

	// boundToHandler is called by Open around the handler it runs: a
	// transport that lives only as long as the handler (an HTTP/2 stream on
	// the server) learns from it when it may no longer end itself.
	boundToHandler() (handlerReturned func())

	LocalAddr() net.Addr
	RemoteAddr() net.Addr
}

// socketTransport is a network connection after the HTTP/1.1 handshake: the
// server's hijacked net.Conn, or the client's upgraded connection.
type socketTransport struct {
	net.Conn

	// reads is made by the first read under a context that can end: most
	// connections read under Open's own context, or under none, and an
	// idle connection should not carry a watcher it never uses. Only the
	// reader stores it; Close loads it from any goroutine.
	reads atomic.Pointer[deadlineWatcher]
}

func newSocketTransport(nc net.Conn) *socketTransport {
	return &socketTransport{Conn: nc}
}

func (t *socketTransport) beginRead(ctx context.Context) {
	w := t.reads.Load()
	if w == nil {
		if ctx == nil || ctx.Done() == nil {
			return
		}
		w = &deadlineWatcher{set: t.Conn.SetReadDeadline}
		t.reads.Store(w)
	}
	w.begin(ctx)
}

func (t *socketTransport) endRead() {
	if w := t.reads.Load(); w != nil {
		w.end()
	}
}

func (t *socketTransport) closeWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (t *socketTransport) Close() error {
	err := t.Conn.Close()
	if w := t.reads.Load(); w != nil {
		w.clear()
	}
	return err
}

func (t *socketTransport) boundToHandler() func() { return func() {} }

// SyscallConn gives the read buffer the socket's syscall.RawConn, with
// which an idle connection holds no buffer (readbuf.go).
func (t *socketTransport) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := t.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// unknownAddr stands for an address that is not known, so that callers of
// LocalAddr and RemoteAddr never get nil.
type unknownAddr struct{}

func (unknownAddr) Network() string { return "unknown" }
func (unknownAddr) String() string  { return "unknown" }
