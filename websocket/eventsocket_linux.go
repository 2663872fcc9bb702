//go:build linux

package websocket

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// eventSocket is the transport of an AcceptEvents connection over a plain
// TCP socket: the descriptor alone, taken from net once the handshake is
// done. net keeps, for every socket, a netFD with both addresses, a
// finalizer and the runtime poller's descriptor (about 0.6 KiB, a third of
// an idle connection's cost in this mode, and the poller's part outside the
// heap); the event loop needs none of it, since it waits in its own epoll
// set. The loop's poller (eventloop_linux.go) wakes what waits here: a write
// the socket's buffer could not take, or the read of a connection failed
// for a protocol error draining on a goroutine until the peer's close
// frame.
//
// Its SyscallConn (rawEventSocket) is how the read buffer and the writer
// reach the descriptor, as they reach net's.
type eventSocket struct {
	fd int

	// refs counts the calls using fd, plus closedBit once closed: the last
	// of close and those calls closes fd, so that its number is never
	// reused under a call still running.
	refs atomic.Int64

	waits atomic.Pointer[socketWaits] // made by the first call that must wait

	local, remote netip.AddrPort
}

const closedBit = 1 << 62

// socketWaits is what a call waiting for the socket needs: the loop's
// poller signals readable and writable, Close closes closed, and a
// deadline's change signals both so that the waiter looks at it again.
type socketWaits struct {
	mu       sync.Mutex
	rd, wd   time.Time
	readable chan struct{}
	writable chan struct{}
	closed   chan struct{}
}

// loopTransport gives an AcceptEvents connection over a TCP socket its
// descriptor as transport, when the event loop will serve it; any other
// transport, or a failure, keeps t.
func loopTransport(t transport) transport {
	st, ok := t.(*socketTransport)
	if !ok {
		return t
	}
	tc, ok := st.Conn.(*net.TCPConn)
	if !ok || pickPoller() == nil {
		return t
	}
	local, lok := tc.LocalAddr().(*net.TCPAddr)
	remote, rok := tc.RemoteAddr().(*net.TCPAddr)
	raw, err := tc.SyscallConn()
	if !lok || !rok || err != nil {
		return t
	}
	dup := -1
	var derr error
	if cerr := raw.Control(func(fd uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			derr = errno
			return
		}
		dup = int(r)
	}); cerr != nil || derr != nil {
		return t
	}
	// The duplicate shares the open socket, non-blocking as net made it;
	// closing net's descriptor takes it out of the runtime's poller and
	// leaves the socket open.
	tc.Close()
	return &eventSocket{fd: dup, local: local.AddrPort(), remote: remote.AddrPort()}
}

func (s *eventSocket) acquire() bool {
	for {
		v := s.refs.Load()
		if v&closedBit != 0 {
			return false
		}
		if s.refs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

func (s *eventSocket) release() {
	if s.refs.Add(-1) == closedBit {
		syscall.Close(s.fd)
	}
}

func (s *eventSocket) isClosed() bool { return s.refs.Load()&closedBit != 0 }

// Close closes the descriptor, at once or when the last call using it
// returns, and wakes the calls waiting.
func (s *eventSocket) Close() error {
	old := s.refs.Or(closedBit)
	if old&closedBit != 0 {
		return net.ErrClosed
	}
	if old == 0 {
		syscall.Close(s.fd)
	}
	// After closedBit: a waiter that made waits before this load is woken
	// here, one that makes it after sees closedBit (wait).
	if w := s.waits.Load(); w != nil {
		close(w.closed)
	}
	return nil
}

func (s *eventSocket) getWaits() *socketWaits {
	if w := s.waits.Load(); w != nil {
		return w
	}
	w := &socketWaits{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1), closed: make(chan struct{})}
	if !s.waits.CompareAndSwap(nil, w) {
		return s.waits.Load()
	}
	return w
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ready is called by the poller with the socket's epoll events.
func (s *eventSocket) ready(events uint32) {
	w := s.waits.Load()
	if w == nil {
		return
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		notify(w.readable)
	}
	if events&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		notify(w.writable)
	}
}

// wait waits until the poller reports the socket readable (or writable),
// its deadline passes, or it is closed. A deadline's change wakes it too:
// the caller then tries again and calls wait once more.
func (s *eventSocket) wait(write bool) error {
	w := s.getWaits()
	if s.isClosed() {
		return net.ErrClosed
	}
	w.mu.Lock()
	d, ch := w.rd, w.readable
	if write {
		d, ch = w.wd, w.writable
	}
	w.mu.Unlock()
	var timeout <-chan time.Time
	if !d.IsZero() {
		left := time.Until(d)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(left)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
		return nil
	case <-w.closed:
		return net.ErrClosed
	case <-timeout:
		return os.ErrDeadlineExceeded
	}
}

// passed reports whether the read (or write) deadline has passed: a call
// then fails before it tries, as on net's connections.
func (s *eventSocket) passed(write bool) bool {
	w := s.waits.Load()
	if w == nil {
		return false
	}
	w.mu.Lock()
	d := w.rd
	if write {
		d = w.wd
	}
	w.mu.Unlock()
	return !d.IsZero() && !time.Now().Before(d)
}

func (s *eventSocket) setDeadline(t time.Time, write bool) error {
	if s.isClosed() {
		return net.ErrClosed
	}
	if t.IsZero() && s.waits.Load() == nil {
		return nil // no deadline to remove
	}
	w := s.getWaits()
	w.mu.Lock()
	if write {
		w.wd = t
	} else {
		w.rd = t
	}
	w.mu.Unlock()
	if write {
		notify(w.writable)
	} else {
		notify(w.readable)
	}
	return nil
}

func (s *eventSocket) SetReadDeadline(t time.Time) error  { return s.setDeadline(t, false) }
func (s *eventSocket) SetWriteDeadline(t time.Time) error { return s.setDeadline(t, true) }

// do runs f on the descriptor until it is done, waiting for the socket
// between tries: syscall.RawConn's Read and Write.
func (s *eventSocket) do(f func(fd uintptr) bool, write bool) error {
	for {
		if s.passed(write) {
			return os.ErrDeadlineExceeded
		}
		if !s.acquire() {
			return net.ErrClosed
		}
		done := f(uintptr(s.fd))
		s.release()
		if done {
			return nil
		}
		if err := s.wait(write); err != nil {
			return err
		}
	}
}

func (s *eventSocket) Control(f func(fd uintptr)) error {
	if !s.acquire() {
		return net.ErrClosed
	}
	f(uintptr(s.fd))
	s.release()
	return nil
}

func (s *eventSocket) Read(p []byte) (int, error) {
	var n int
	var err error
	rerr := s.do(func(fd uintptr) bool {
		for {
			n, err = sysRead(fd, p)
			if err != syscall.EINTR {
				return err != syscall.EAGAIN
			}
		}
	}, false)
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *eventSocket) Write(p []byte) (int, error) {
	n := 0
	var err error
	rerr := s.do(func(fd uintptr) bool {
		for n < len(p) {
			k, werr := sysWrite(fd, p[n:])
			switch {
			case werr == syscall.EINTR:
				continue
			case werr == syscall.EAGAIN:
				return false
			case werr != nil:
				err = os.NewSyscallError("write", werr)
				return true
			}
			n += k
		}
		return true
	}, true)
	if rerr != nil {
		return n, rerr
	}
	return n, err
}

// SyscallConn is the socket's RawConn, for the read buffer and the writer.
func (s *eventSocket) SyscallConn() (syscall.RawConn, error) { return rawEventSocket{s}, nil }

// rawEventSocket is the socket's syscall.RawConn: its Read and Write take
// a function of the descriptor, where the transport's take bytes.
type rawEventSocket struct{ *eventSocket }

var _ syscall.RawConn = rawEventSocket{}

func (s rawEventSocket) Read(f func(fd uintptr) bool) error  { return s.do(f, false) }
func (s rawEventSocket) Write(f func(fd uintptr) bool) error { return s.do(f, true) }

// An AcceptEvents connection is never read under a context (Read is not
// available on it): there is nothing for a context to interrupt.
func (s *eventSocket) beginRead(context.Context) {}
func (s *eventSocket) endRead()                  {}

func (s *eventSocket) closeWrite() error {
	if !s.acquire() {
		return net.ErrClosed
	}
	defer s.release()
	return os.NewSyscallError("shutdown", syscall.Shutdown(s.fd, syscall.SHUT_WR))
}

func (s *eventSocket) boundToHandler() func() { return func() {} }

func (s *eventSocket) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(s.local) }
func (s *eventSocket) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(s.remote) }
