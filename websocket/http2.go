package websocket

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// WebSockets over HTTP/2 (RFC 8441): the client opens a stream with an
// extended CONNECT request (":protocol: websocket"), the server answers 200,
// and the frames of RFC 6455 then travel as the stream's DATA: the request
// body one way, the response body the other. There is no Sec-WebSocket-Key
// and no Sec-WebSocket-Accept; subprotocols and extensions are negotiated
// with the same headers as over HTTP/1.1.
//
// Go's net/http server accepts an extended CONNECT only when the GODEBUG
// environment variable held http2xconnect=1 as net/http started
// (src/net/http/h2_bundle.go, the init function that reads GODEBUG, and
// serverConn.serve, which then sends SETTINGS_ENABLE_CONNECT_PROTOCOL).
// Without it the server does not advertise the setting, so browsers and
// this package's Dial use HTTP/1.1, and an extended CONNECT is reset before
// it reaches a handler.

// xconnectEnabled mirrors net/http's own test of the environment, made when
// the program started.
var xconnectEnabled = strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1")

const xconnectHint = "this server has not enabled it: run it with GODEBUG=http2xconnect=1, or import github.com/duplexws/duplex/websocket/http2xconnect"

// checkHTTP2Request checks an HTTP/2 request against RFC 8441 §4-5: an
// extended CONNECT whose :protocol is websocket, with version 13.
func checkHTTP2Request(w http.ResponseWriter, r *http.Request) *HandshakeError {
	bad := func(msg string) *HandshakeError {
		return &HandshakeError{Status: http.StatusBadRequest, Message: msg}
	}
	if r.Method != http.MethodConnect {
		if !xconnectEnabled {
			return bad("this endpoint speaks WebSocket, which over HTTP/2 needs an extended CONNECT request (RFC 8441); " + xconnectHint)
		}
		return bad("this endpoint speaks WebSocket: over HTTP/2 it takes an extended CONNECT request with :protocol websocket (RFC 8441), not " + r.Method)
	}
	switch p := r.Header.Get(":protocol"); {
	case p == "":
		return bad("a CONNECT without :protocol asks for a tunnel; a WebSocket needs :protocol websocket (RFC 8441)")
	case !strings.EqualFold(p, "websocket"):
		return bad("the extended CONNECT asks for protocol " + quote(p) + "; this endpoint speaks websocket")
	}
	return checkVersion(w, r)
}

// acceptHTTP2 answers an extended CONNECT that passed the checks and returns
// the connection over its stream. The connection lives in the handler: it
// must be closed before the handler returns, which Open does.
func acceptHTTP2(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, subprotocol, extensions string, onClose func()) (*Conn, error) {
	rc := http.NewResponseController(w)
	timeout := opts.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	// The server's WriteTimeout and ReadTimeout bound the stream as they
	// bound a request; the WebSocket sets its own. A ResponseWriter that
	// cannot set deadlines hides the stream (a wrapper without Unwrap).
	if err := rc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return nil, refuse(w, &HandshakeError{Status: http.StatusInternalServerError, Message: "the ResponseWriter does not give access to the HTTP/2 stream (does a middleware wrap it without an Unwrap method?): " + err.Error(), cause: err})
	}
	rc.SetReadDeadline(time.Time{})

	h := w.Header()
	for k, vs := range opts.ResponseHeader {
		h[k] = append(h[k], vs...)
	}
	if subprotocol != "" {
		h.Set("Sec-WebSocket-Protocol", subprotocol)
	}
	if extensions != "" {
		h.Set("Sec-WebSocket-Extensions", extensions)
	}
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, &HandshakeError{Message: "sending the handshake response: " + err.Error(), cause: err}
	}
	rc.SetWriteDeadline(time.Time{})

	s := newHTTP2Stream(r.Body)
	s.write = func(p []byte) (int, error) {
		n, err := w.Write(p)
		if err == nil {
			err = rc.Flush()
		}
		return n, err
	}
	// Resetting the stream is the only way to stop a write that waits for
	// flow control; it is done only while the handler runs (Close waits
	// for the write).
	s.kill = func() { rc.SetWriteDeadline(pastDeadline) }
	s.finish = func(writing bool) {
		// A write in flight was stopped by Close; wait until it returned, so
		// that nothing touches the ResponseWriter after the handler does.
		s.wmu.Lock()
		s.wmu.Unlock()
		r.Body.Close() // ends the reading goroutine
	}
	s.start()
	return newConn(s, requestAddrs(r), false, subprotocol, &opts.Options, onClose), nil
}

// requestAddrs gives a request's addresses to Conn.LocalAddr and RemoteAddr.
func requestAddrs(r *http.Request) net.Conn {
	a := &addrOnly{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		a.remote = net.TCPAddrFromAddrPort(ap)
	}
	a.local, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return a
}

// addrOnly carries the addresses of a connection whose network connection
// is not its own (an HTTP/2 stream shares it). Only the address methods
// are for use.
type addrOnly struct{ local, remote net.Addr }

func (a *addrOnly) LocalAddr() net.Addr              { return a.local }
func (a *addrOnly) RemoteAddr() net.Addr             { return a.remote }
func (a *addrOnly) Read([]byte) (int, error)         { return 0, errors.ErrUnsupported }
func (a *addrOnly) Write([]byte) (int, error)        { return 0, errors.ErrUnsupported }
func (a *addrOnly) Close() error                     { return errors.ErrUnsupported }
func (a *addrOnly) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (a *addrOnly) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (a *addrOnly) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }

// errStreamClosed is what reads and writes return after Close.
var errStreamClosed = errors.New("websocket: HTTP/2 stream closed")

// http2Stream is a connection's transport over an HTTP/2 stream: a body to
// read (the request's on the server, the response's on the client) and a
// way to write and flush the other direction.
//
// An HTTP/2 body has no deadlines that can be moved and undone as a
// net.Conn's can: net/http's stream deadlines end the stream when they
// pass. So the deadlines here are kept by the stream itself. A goroutine
// reads the body, so that a Read can give up at its deadline (a context
// cancelled between two messages) and leave what arrives for the next
// Read; a write that outlives its deadline resets the stream, as the
// connection is failed then anyway.
//
// An idle connection over HTTP/2 costs, besides its own goroutine, this
// reading goroutine and a 512-byte buffer; a busy one reads through a
// pooled 8 KiB buffer.
type http2Stream struct {
	body io.ReadCloser

	// Reading. The goroutine fills a chunk and signals ready; Read owns the
	// chunk until it signals more.
	ready   chan struct{}
	more    chan struct{}
	chunk   []byte
	rerr    error
	holding bool // Read owns chunk and rerr
	small   [smallReadSize]byte
	big     *[]byte
	full    bool // the last read filled its buffer: the stream is busy

	rdMu       sync.Mutex
	rdDeadline time.Time
	rdPoke     chan struct{} // the deadline moved while a Read waits
	rdTimer    *time.Timer   // used by Read only

	// Writing. wmu is held for each write; wdMu guards the deadline state.
	wmu        sync.Mutex
	write      func([]byte) (int, error) // writes and flushes
	kill       func()                    // resets the stream, ending a blocked write
	wdMu       sync.Mutex
	wdDeadline time.Time
	wdTimer    *time.Timer
	writing    bool
	timedOut   bool

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	finish    func(writing bool) // the side's own end of Close
}

func newHTTP2Stream(body io.ReadCloser) *http2Stream {
	return &http2Stream{
		body:   body,
		ready:  make(chan struct{}, 1),
		more:   make(chan struct{}, 1),
		rdPoke: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

func (s *http2Stream) start() { go s.readLoop() }

// readLoop reads the body chunk by chunk and hands each chunk to Read.
func (s *http2Stream) readLoop() {
	for {
		b := s.small[:]
		if s.full {
			if s.big == nil {
				s.big = readBufferPool.Get().(*[]byte)
			}
			b = *s.big
		} else if s.big != nil {
			readBufferPool.Put(s.big)
			s.big = nil
		}
		n, err := s.body.Read(b)
		s.full = n == len(b)
		select {
		case <-s.done:
			s.drain()
			return
		default:
		}
		s.chunk, s.rerr = b[:n], err
		s.ready <- struct{}{}
		if err != nil {
			// Read keeps the chunk; a big buffer goes to the collector.
			s.body.Close()
			return
		}
		select {
		case <-s.more:
		case <-s.done:
			// Read may still hold the chunk: leave the buffers alone.
			s.drain()
			return
		}
	}
}

// drain reads what is left of the body after Close, so that the stream
// ends with the peer's END_STREAM rather than a reset, then closes it.
func (s *http2Stream) drain() {
	io.Copy(io.Discard, s.body)
	s.body.Close()
}

func (s *http2Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		select {
		case <-s.done:
			return 0, errStreamClosed
		default:
		}
		if !s.holding {
			if err := s.waitChunk(); err != nil {
				return 0, err
			}
		}
		if len(s.chunk) > 0 {
			n := copy(p, s.chunk)
			s.chunk = s.chunk[n:]
			if len(s.chunk) == 0 && s.rerr == nil {
				s.holding = false
				s.more <- struct{}{}
			}
			return n, nil
		}
		if s.rerr != nil {
			return 0, s.rerr
		}
		s.holding = false
		s.more <- struct{}{}
	}
}

// waitChunk waits for the reading goroutine, at most until the deadline.
func (s *http2Stream) waitChunk() error {
	for {
		select {
		case <-s.ready:
			s.holding = true
			return nil
		default:
		}
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
			if expired != nil {
				s.rdTimer.Stop()
			}
			s.holding = true
			return nil
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

func (s *http2Stream) SetReadDeadline(t time.Time) error {
	s.rdMu.Lock()
	s.rdDeadline = t
	s.rdMu.Unlock()
	select {
	case s.rdPoke <- struct{}{}:
	default:
	}
	return nil
}

func (s *http2Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.startWrite(); err != nil {
		return 0, err
	}
	n, err := s.write(p)
	if s.endWrite() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// startWrite checks the deadline and arms its timer for the write.
func (s *http2Stream) startWrite() error {
	s.wdMu.Lock()
	defer s.wdMu.Unlock()
	select {
	case <-s.done:
		return errStreamClosed
	default:
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
func (s *http2Stream) endWrite() bool {
	s.wdMu.Lock()
	defer s.wdMu.Unlock()
	s.writing = false
	if s.wdTimer != nil {
		s.wdTimer.Stop()
	}
	return s.timedOut
}

func (s *http2Stream) armWriteTimer(wait time.Duration) {
	if s.wdTimer == nil {
		s.wdTimer = time.AfterFunc(wait, s.writeTimeout)
	} else {
		s.wdTimer.Reset(wait)
	}
}

// writeTimeout runs when the write deadline passes during a write.
func (s *http2Stream) writeTimeout() {
	s.wdMu.Lock()
	expired := s.writing && !s.wdDeadline.IsZero() && !time.Now().Before(s.wdDeadline)
	if expired {
		s.timedOut = true
	}
	s.wdMu.Unlock()
	if expired {
		s.kill()
	}
}

func (s *http2Stream) SetWriteDeadline(t time.Time) error {
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

// Close ends the connection's use of the stream: blocked reads return at
// once, a write in flight is stopped by resetting the stream, and the
// side's finish ends the stream (see there).
func (s *http2Stream) Close() error {
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
			s.kill()
		}
		s.finish(writing)
	})
	return nil
}
