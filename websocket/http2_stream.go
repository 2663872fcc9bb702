package websocket

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// errStreamClosed is what reads and writes return after Close.
var errStreamClosed = errors.New("websocket: HTTP/2 stream closed")

// streamTransport is a connection's transport over an HTTP/2 stream: a body
// to read (the request's on the server, the response's on the client) and
// the other direction to write. What differs between the two sides, how to
// write, to reset the stream and to end it, is the streamEnd.
//
// An HTTP/2 body cannot be interrupted and then read again: net/http's
// stream deadlines, and closing the body, end the stream for good. A read
// that nothing can interrupt, because the context of the Read that waits
// is the connection's own (the one Open hands the handler, which ends only
// when the connection does) or has no end at all, therefore reads the body
// directly, in the reading goroutine; an idle connection then costs no
// goroutine of its own. A read that a context or deadline may interrupt
// reads the body in a short-lived goroutine and waits for it, so that when
// it gives up, what arrives later is kept for the next Read.
type streamTransport struct {
	end        streamEnd
	body       io.ReadCloser
	local, rem net.Addr

	// Reading. Owned by the Conn's reader (readSem), except rdDeadline.
	watched  context.Context // interrupts waits when it ends; nil: none
	inFlight bool            // a readAhead goroutine owns buf until it sends on ready
	ready    chan struct{}
	chunk    []byte // what readAhead read and Read has not yet passed on
	chunkErr error
	rerr     error // sticky: the body's error, once every byte before it was read
	small    [smallReadSize]byte
	big      *[]byte
	full     bool // the last read filled its buffer: the stream is busy
	rdTimer  *time.Timer

	rdMu       sync.Mutex
	rdDeadline time.Time
	rdPoke     chan struct{} // the deadline moved while a Read waits

	// Writing. wmu is held for each write; wdMu guards the deadline state.
	wmu        sync.Mutex
	wdMu       sync.Mutex
	wdDeadline time.Time
	wdTimer    *time.Timer
	writing    bool
	timedOut   bool

	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

// streamEnd is one side's part of a stream.
type streamEnd interface {
	// write writes p and flushes it to the peer.
	write(p []byte) (int, error)
	// reset ends the stream abruptly (RST_STREAM), which stops a write that
	// waits for flow control.
	reset()
	// finish ends the connection's use of the stream after Close; writing
	// tells whether a write was in flight and had to be reset.
	finish(writing bool)
	// boundToHandler: see transport.
	boundToHandler() func()
}

func newStreamTransport(end streamEnd, body io.ReadCloser, local, remote net.Addr) *streamTransport {
	if local == nil {
		local = unknownAddr{}
	}
	if remote == nil {
		remote = unknownAddr{}
	}
	return &streamTransport{
		end:    end,
		body:   body,
		local:  local,
		rem:    remote,
		ready:  make(chan struct{}, 1),
		rdPoke: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

func (s *streamTransport) LocalAddr() net.Addr  { return s.local }
func (s *streamTransport) RemoteAddr() net.Addr { return s.rem }

func (s *streamTransport) boundToHandler() func() { return s.end.boundToHandler() }

func (s *streamTransport) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *streamTransport) beginRead(ctx context.Context) { s.watched = ctx }
func (s *streamTransport) endRead()                      { s.watched = nil }

func (s *streamTransport) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.closed() {
			return 0, errStreamClosed
		}
		if s.inFlight {
			if err := s.waitReadAhead(); err != nil {
				return 0, err
			}
		}
		if len(s.chunk) > 0 {
			n := copy(p, s.chunk)
			s.chunk = s.chunk[n:]
			return n, nil
		}
		if s.chunkErr != nil {
			s.rerr, s.chunkErr = s.chunkErr, nil
		}
		if s.rerr != nil {
			return 0, s.rerr
		}
		if !s.interruptible() {
			n, err := s.body.Read(p)
			if err != nil {
				if s.closed() {
					err = errStreamClosed
				}
				s.rerr = err
			}
			return n, nil2(n, err)
		}
		s.inFlight = true
		go s.readAhead(s.readBuffer())
	}
}

// nil2 keeps an error that came with data for the next call, as io.Reader
// allows, so that the caller sees data and error apart.
func nil2(n int, err error) error {
	if n > 0 {
		return nil
	}
	return err
}

// interruptible reports whether a read may have to give up before data
// comes: a watched context or a read deadline is set.
func (s *streamTransport) interruptible() bool {
	if s.watched != nil {
		return true
	}
	s.rdMu.Lock()
	defer s.rdMu.Unlock()
	return !s.rdDeadline.IsZero()
}

// readBuffer is the buffer for the next read ahead: a small one while the
// stream is quiet, a pooled one while it is busy.
func (s *streamTransport) readBuffer() []byte {
	if s.full {
		if s.big == nil {
			s.big = readBufferPool.Get().(*[]byte)
		}
		return *s.big
	}
	if s.big != nil {
		readBufferPool.Put(s.big)
		s.big = nil
	}
	return s.small[:]
}

// readAhead reads the body once, in its own goroutine, and ends.
func (s *streamTransport) readAhead(b []byte) {
	n, err := s.body.Read(b)
	s.full = n == len(b)
	s.chunk, s.chunkErr = b[:n], err
	s.ready <- struct{}{}
}

// waitReadAhead waits for the read ahead, at most until the watched context
// ends or the deadline passes.
func (s *streamTransport) waitReadAhead() error {
	var cancelled <-chan struct{}
	if s.watched != nil {
		cancelled = s.watched.Done()
	}
	for {
		s.rdMu.Lock()
		d := s.rdDeadline
		s.rdMu.Unlock()
		var expired <-chan time.Time
		if !d.IsZero() {
			wait := time.Until(d)
			if wait <= 0 {
				return os.ErrDeadlineExceeded
			}
			if s.rdTimer == nil {
				s.rdTimer = time.NewTimer(wait)
			} else {
				s.rdTimer.Reset(wait)
			}
			expired = s.rdTimer.C
		}
		select {
		case <-s.ready:
			s.inFlight = false
			if expired != nil {
				s.rdTimer.Stop()
			}
			return nil
		case <-cancelled:
			if expired != nil {
				s.rdTimer.Stop()
			}
			return os.ErrDeadlineExceeded
		case <-expired:
		case <-s.rdPoke:
		case <-s.done:
			if expired != nil {
				s.rdTimer.Stop()
			}
			return errStreamClosed
		}
	}
}

func (s *streamTransport) SetReadDeadline(t time.Time) error {
	s.rdMu.Lock()
	s.rdDeadline = t
	s.rdMu.Unlock()
	select {
	case s.rdPoke <- struct{}{}:
	default:
	}
	return nil
}

func (s *streamTransport) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.startWrite(); err != nil {
		return 0, err
	}
	n, err := s.end.write(p)
	if s.endWrite() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// startWrite checks the deadline and arms its timer for the write.
func (s *streamTransport) startWrite() error {
	s.wdMu.Lock()
	defer s.wdMu.Unlock()
	if s.closed() {
		return errStreamClosed
	}
	s.writing, s.timedOut = true, false
	if d := s.wdDeadline; !d.IsZero() {
		wait := time.Until(d)
		if wait <= 0 {
			s.writing = false
			return os.ErrDeadlineExceeded
		}
		s.armWriteTimer(wait)
	}
	return nil
}

// endWrite reports whether the write was stopped by its deadline.
func (s *streamTransport) endWrite() bool {
	s.wdMu.Lock()
	defer s.wdMu.Unlock()
	s.writing = false
	if s.wdTimer != nil {
		s.wdTimer.Stop()
	}
	return s.timedOut
}

func (s *streamTransport) armWriteTimer(wait time.Duration) {
	if s.wdTimer == nil {
		s.wdTimer = time.AfterFunc(wait, s.writeTimeout)
	} else {
		s.wdTimer.Reset(wait)
	}
}

// writeTimeout runs when the write deadline passes during a write: the
// only way to stop a write that waits for flow control is to reset the
// stream, and a connection whose write timed out is failed anyway.
func (s *streamTransport) writeTimeout() {
	s.wdMu.Lock()
	expired := s.writing && !s.wdDeadline.IsZero() && !time.Now().Before(s.wdDeadline)
	if expired {
		s.timedOut = true
	}
	s.wdMu.Unlock()
	if expired {
		s.end.reset()
	}
}

func (s *streamTransport) SetWriteDeadline(t time.Time) error {
	s.wdMu.Lock()
	defer s.wdMu.Unlock()
	s.wdDeadline = t
	if !s.writing {
		return nil
	}
	if t.IsZero() {
		if s.wdTimer != nil {
			s.wdTimer.Stop()
		}
		return nil
	}
	s.armWriteTimer(max(time.Until(t), 0))
	return nil
}

// closeWrite does nothing: a server's stream ends only when its handler
// returns, and the client ends its side in finish.
func (s *streamTransport) closeWrite() error { return nil }

// Close ends the connection's use of the stream: blocked reads return at
// once, a write in flight is stopped by resetting the stream, and the
// side's finish ends the stream.
func (s *streamTransport) Close() error {
	s.closeOnce.Do(func() {
		s.wdMu.Lock()
		close(s.done)
		writing := s.writing
		if writing {
			s.timedOut = false
			if s.wdTimer != nil {
				s.wdTimer.Stop()
			}
		}
		s.wdMu.Unlock()
		if writing {
			s.end.reset()
		}
		s.end.finish(writing)
	})
	return nil
}
