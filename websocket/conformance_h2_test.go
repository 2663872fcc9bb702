package websocket_test

// The conformance suite over HTTP/2 (RFC 8441): "server-h2/<case>" and "client-h2/<case>" run
// every case of conformance_*_test.go with the raw peer's bytes carried by one HTTP/2 stream.
//
//   - server-h2: our server (websocket.Open, the same echo handler as over HTTP/1.1) behind an
//     HTTP/2 TLS server with extended CONNECT on. The raw client opens a TLS connection with ALPN
//     h2, hands it to net/http's HTTP/2 client through Transport.TLSNextProto["h2"] (which,
//     unlike http.Transport.RoundTrip, lets ":protocol" through; see http2_dial.go), sends the
//     extended CONNECT (":protocol: websocket") with a pipe as the request body, and then writes
//     its hand-built frames into that body and reads the raw bytes of the response body.
//   - client-h2: our client (websocket.Dial forced to HTTP/2) against an HTTP/2 TLS server whose
//     handler answers the extended CONNECT by hand (200) and then is the raw server: it writes
//     hand-built frames with ResponseWriter.Write and Flush and reads raw bytes from r.Body.
//
// The case code is the same as over TCP: h2Stream gives the stream the shape of a connection,
// with deadlines emulated. The few checks that are about TCP have their HTTP/2 equivalent
// (RFC 8441 section 5: END_STREAM stands for an orderly TCP close, RST_STREAM for a TCP RST):
//
//   - "our side closes the TCP connection" (expectTCPClosed, expectEOF; every case that ends in a
//     closing handshake or a failure, and the 7.tcp.* cases where the application holds the Conn):
//     our side must end its stream; the raw peer reads the stream's body to its end, io.EOF for
//     END_STREAM or an error for RST_STREAM, both counted as "closed". The raw server does not
//     half-close first (CloseWrite over TCP): net/http ends a response only when its handler
//     returns, which would also end the raw server's reading.
//   - "frames arriving together with the 101 response" (1.hs.1): the raw server writes the frames
//     into the response before its first Flush, so that net/http sends their DATA right behind
//     the 200's HEADERS, without waiting for anything from our client: they reach the HTTP/2
//     client while our Dial is still checking the response, and none may be lost.
//
// The raw peer's chops are preserved: each Write of the raw peer becomes DATA frames of its own
// (a pipe Write on the client, Write and Flush on the server), so an octet-wise send is a run of
// one-byte DATA frames.
//
// Extended CONNECT is on in net/http's server because http2_test.go imports package
// http2xconnect for this test binary (imported here too, for clarity).

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
	_ "github.com/duplexws/duplex/websocket/http2xconnect"
)

// startH2Peer is startPeer over an HTTP/2 stream.
func startH2Peer(t *testing.T, s side, cfg endpointConfig) *peer {
	t.Helper()
	if s == serverSide {
		return startServerPeerH2(t, cfg)
	}
	return startClientPeerH2(t, cfg)
}

// startH2TLSServer starts an HTTPS test server that speaks HTTP/2.
func startH2TLSServer(h http.Handler) *httptest.Server {
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	return ts
}

// ---- server-h2: the raw peer is an HTTP/2 client ----

func startServerPeerH2(t *testing.T, cfg endpointConfig) *peer {
	t.Helper()
	our := newOurEnd()
	ts := startH2TLSServer(ourServer(cfg, our))
	tr := rawH2Transport(ts)
	tc, rt, err := dialRawH2(tr, ts.Listener.Addr().String())
	if err != nil {
		ts.Close()
		t.Fatal(err)
	}
	// The request's context lives as long as the stream; the handshake has its own bound below.
	sctx, endStream := context.WithCancel(context.Background())
	var stream *h2Stream
	t.Cleanup(func() {
		close(our.release)
		if stream != nil {
			stream.Close()
		}
		endStream()
		select {
		case <-our.done:
		case <-time.After(finishTimeout):
			t.Errorf("our server's handler did not finish within %v after the case ended", finishTimeout)
		}
		tc.Close()
		tr.CloseIdleConnections()
		ts.Close()
	})

	bound := time.AfterFunc(ioTimeout, endStream)
	resp, pw, err := openRawH2Stream(sctx, rt, ts.URL+"/echo")
	if !bound.Stop() {
		err = fmt.Errorf("no response within %v (%v)", ioTimeout, err)
	}
	if err != nil {
		t.Fatalf("extended CONNECT: %v", err)
	}
	checkH2Response(t, resp) // on failure, endStream in the cleanup resets the stream
	stream = rawH2Stream(resp, pw)

	p := &peer{t: t, side: serverSide, h2: true, conn: stream, br: bufio.NewReaderSize(stream, 64<<10),
		rng: rand.New(rand.NewSource(time.Now().UnixNano())), our: our}
	return p
}

// rawH2Transport is a transport of our own for ts, set up for HTTP/2
// (Transport.onceSetNextProtoDefaults), for its TLSNextProto["h2"] and its TLS config with ALPN h2.
func rawH2Transport(ts *httptest.Server) *http.Transport {
	tr := ts.Client().Transport.(*http.Transport).Clone()
	tr.CloseIdleConnections()
	return tr
}

// dialRawH2 opens a TLS connection with ALPN h2 to addr and hands it to net/http's HTTP/2 client
// through tr.TLSNextProto["h2"], which, unlike http.Transport.RoundTrip, lets ":protocol" through
// (see http2_dial.go). Closing the TLS connection drops the HTTP/2 connection and its streams.
func dialRawH2(tr *http.Transport, addr string) (*tls.Conn, http.RoundTripper, error) {
	tc, err := dialH2TLS(tr, addr)
	if err != nil {
		return nil, nil, err
	}
	return tc, tr.TLSNextProto["h2"](addr, tc), nil
}

// dialH2TLS opens a TLS connection with ALPN h2 to addr, on which no HTTP/2 has been sent yet.
func dialH2TLS(tr *http.Transport, addr string) (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: ioTimeout}, Config: tr.TLSClientConfig}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial test server: %w", err)
	}
	tc := nc.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		tc.Close()
		return nil, fmt.Errorf("ALPN chose %q, want h2", p)
	}
	return tc, nil
}

// openRawH2Stream sends an extended CONNECT (":protocol: websocket") for url over rt, with a
// pipe as the request body, and returns the response and the pipe's writing end: the raw
// peer's two halves of the stream. ctx lives as long as the stream; ending it resets the stream.
func openRawH2Stream(ctx context.Context, rt http.RoundTripper, url string) (*http.Response, *io.PipeWriter, error) {
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, url, pr)
	if err != nil {
		return nil, nil, err
	}
	req.Header[":protocol"] = []string{"websocket"}
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, nil, err
	}
	return resp, pw, nil
}

// rawH2Stream shapes an accepted stream from openRawH2Stream as a connection.
func rawH2Stream(resp *http.Response, pw *io.PipeWriter) *h2Stream {
	s := newH2Stream(resp.Body, pw.Write,
		func() { pw.CloseWithError(net.ErrClosed) },
		func() {
			pw.Close()        // END_STREAM, if the request is still open
			resp.Body.Close() // RST_STREAM, if the response is still open
		})
	s.closeWrite = pw.Close
	return s
}

// checkH2Response checks our server's answer to the extended CONNECT (RFC 8441 sections 4-5).
func checkH2Response(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.ProtoMajor != 2 {
		t.Fatalf("handshake answered over %s, want HTTP/2", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK {
		body := make([]byte, 512)
		n, _ := io.ReadFull(resp.Body, body)
		t.Fatalf("handshake: status %q (%q), want 200 (RFC 8441 5: a 2xx accepts the extended CONNECT)", resp.Status, body[:n])
	}
	if v := resp.Header.Get("Sec-WebSocket-Accept"); v != "" {
		t.Fatalf("handshake: Sec-WebSocket-Accept %q in an HTTP/2 response (RFC 8441 5: not used)", v)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("handshake: server selected extensions %q that the client did not offer", ext)
	}
}

// ---- client-h2: the raw peer is an HTTP/2 server ----

// h2Request is an extended CONNECT, handed by the raw server's handler to the case.
type h2Request struct {
	w http.ResponseWriter
	r *http.Request
}

func startClientPeerH2(t *testing.T, cfg endpointConfig) *peer {
	t.Helper()
	reqs := make(chan h2Request, 1)
	// The handler lives as long as the raw server's side of the stream: it returns (ending the
	// response with END_STREAM) when the stream is closed or the case ends.
	handlerEnd := make(chan struct{})
	var endOnce sync.Once
	endHandler := func() { endOnce.Do(func() { close(handlerEnd) }) }
	var served atomic.Bool
	ts := startH2TLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !served.CompareAndSwap(false, true) {
			http.Error(w, "one connection per case", http.StatusServiceUnavailable)
			return
		}
		reqs <- h2Request{w, r}
		<-handlerEnd
	}))

	our := newOurEnd()
	dialed := make(chan struct{})
	url := "wss" + strings.TrimPrefix(ts.URL, "https") + "/echo"
	opts := &websocket.DialOptions{Options: cfg.opts, HTTPVersion: websocket.HTTP2, HTTPClient: ts.Client()}
	go runOurClient(url, opts, cfg, our, dialed)

	var stream *h2Stream
	t.Cleanup(func() {
		close(our.release)
		if stream != nil {
			stream.Close()
		}
		endHandler()
		select {
		case <-our.done:
		case <-time.After(finishTimeout):
			t.Errorf("our client's goroutine did not finish within %v after the case ended", finishTimeout)
		}
		ts.Close()
	})

	var hr h2Request
	select {
	case hr = <-reqs:
	case err := <-our.errc:
		t.Fatalf("our client failed before its extended CONNECT reached the server: %v", err)
	case <-time.After(ioTimeout):
		t.Fatalf("no extended CONNECT from our client within %v", ioTimeout)
	}
	w, r := hr.w, hr.r
	rc := http.NewResponseController(w)
	stream = newH2Stream(r.Body,
		func(b []byte) (int, error) {
			n, err := w.Write(b)
			if err == nil {
				err = rc.Flush()
			}
			return n, err
		},
		func() { rc.SetWriteDeadline(time.Unix(1, 0)) }, // resets the stream, ending a blocked write
		func() {
			r.Body.Close()
			endHandler()
		})
	p := &peer{t: t, side: clientSide, h2: true, conn: stream, br: bufio.NewReaderSize(stream, 64<<10),
		rng: rand.New(rand.NewSource(time.Now().UnixNano())), our: our}
	p.serverHandshakeH2(w, r, cfg.with101)
	select {
	case <-dialed:
	case err := <-our.errc:
		t.Fatalf("our client failed the handshake: %v", err)
	case <-time.After(ioTimeout):
		t.Fatalf("websocket.Dial did not return within %v after the 200 response", ioTimeout)
	}
	return p
}

// serverHandshakeH2 checks our client's extended CONNECT and answers 200 (RFC 8441 sections
// 4-5). extra goes into the response before its first flush: frames that leave with the 200.
func (p *peer) serverHandshakeH2(w http.ResponseWriter, r *http.Request, extra []byte) {
	t := p.t
	t.Helper()
	if r.ProtoMajor != 2 {
		t.Fatalf("handshake request over %s, want HTTP/2", r.Proto)
	}
	if r.Method != http.MethodConnect {
		t.Fatalf("handshake request method %q, want CONNECT (RFC 8441 4)", r.Method)
	}
	if v := r.Header.Get(":protocol"); v != "websocket" {
		t.Fatalf("handshake request :protocol %q, want websocket (RFC 8441 4)", v)
	}
	if r.URL.Path != "/echo" {
		t.Fatalf("handshake request :path %q, want /echo", r.URL.Path)
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		t.Fatalf("handshake request Sec-WebSocket-Version %q, want 13", v)
	}
	if v := r.Header.Get("Sec-WebSocket-Key"); v != "" {
		t.Fatalf("handshake request Sec-WebSocket-Key %q over HTTP/2 (RFC 8441 5: not used)", v)
	}
	w.WriteHeader(http.StatusOK)
	if len(extra) > 0 {
		if _, err := w.Write(extra); err != nil {
			t.Fatalf("write the frames that go with the 200 response: %v", err)
		}
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Fatalf("write 200 response: %v", err)
	}
}

// ---- the stream as a connection ----

// h2Stream is the raw peer's end of an HTTP/2 stream, shaped as a connection: it reads the body
// our side sends, writes (and flushes) the other direction, and keeps deadlines as a net.Conn
// does. A goroutine reads the body, so that a Read can give up at its deadline and leave the
// stream as it is; a Write that outlives its deadline resets the stream (the case fails then
// anyway). Close ends the raw peer's side of the stream.
type h2Stream struct {
	body  io.ReadCloser
	write func([]byte) (int, error) // writes and flushes
	abort func()                    // ends a write blocked by flow control
	end   func()                    // ends the raw peer's use of the stream
	// closeWrite ends the raw peer's half of the stream (END_STREAM) while reading goes on, as
	// CloseWrite does on a TCP connection; nil where the raw peer cannot (the raw server).
	closeWrite func() error

	chunks chan h2Chunk
	buf    []byte // the rest of the chunk being read
	rerr   error  // the stream's end, once read

	rdMu       sync.Mutex
	rdDeadline time.Time
	rdPoke     chan struct{} // the read deadline moved

	wmu        sync.Mutex // held for each write
	wdMu       sync.Mutex // guards wdDeadline and writing
	wdDeadline time.Time
	writing    bool

	closed    chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}
}

type h2Chunk struct {
	data []byte
	err  error
}

func newH2Stream(body io.ReadCloser, write func([]byte) (int, error), abort, end func()) *h2Stream {
	s := &h2Stream{
		body: body, write: write, abort: abort, end: end,
		chunks:   make(chan h2Chunk),
		rdPoke:   make(chan struct{}, 1),
		closed:   make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	go s.readLoop()
	return s
}

func (s *h2Stream) readLoop() {
	defer close(s.loopDone)
	for {
		b := make([]byte, 32<<10)
		n, err := s.body.Read(b)
		select {
		case s.chunks <- h2Chunk{b[:n], err}:
		case <-s.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

// streamEnd describes how the stream ended, as the peer's event checks (isClosedErr) expect of a
// connection: END_STREAM is io.EOF, anything else a reset (errors.Is ECONNRESET).
func streamEnd(err error) error {
	if err == io.EOF {
		return fmt.Errorf("our side ended the HTTP/2 stream (END_STREAM): %w", io.EOF)
	}
	return &streamResetError{err}
}

type streamResetError struct{ err error }

func (e *streamResetError) Error() string {
	return "the HTTP/2 stream was reset (RST_STREAM) or its connection lost: " + e.err.Error()
}

func (e *streamResetError) Is(target error) bool { return target == syscall.ECONNRESET }

func (s *h2Stream) Read(p []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(s.buf) == 0 {
		if s.rerr != nil {
			return 0, s.rerr
		}
		select {
		case <-s.closed:
			return 0, net.ErrClosed
		default:
		}
		s.rdMu.Lock()
		d := s.rdDeadline
		s.rdMu.Unlock()
		var expired <-chan time.Time
		if !d.IsZero() {
			wait := time.Until(d)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			expired = timer.C
		}
		select {
		case c := <-s.chunks:
			s.buf = c.data
			if c.err != nil {
				s.rerr = streamEnd(c.err)
			}
		case <-expired:
		case <-s.rdPoke:
		case <-s.closed:
			return 0, net.ErrClosed
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func (s *h2Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wdMu.Lock()
	select {
	case <-s.closed:
		s.wdMu.Unlock()
		return 0, net.ErrClosed
	default:
	}
	d := s.wdDeadline
	if !d.IsZero() && !time.Now().Before(d) {
		s.wdMu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	s.writing = true
	s.wdMu.Unlock()
	var timedOut atomic.Bool
	if !d.IsZero() {
		timer := time.AfterFunc(time.Until(d), func() {
			timedOut.Store(true)
			s.abort()
		})
		defer timer.Stop()
	}
	n, err := s.write(p)
	s.wdMu.Lock()
	s.writing = false
	s.wdMu.Unlock()
	if timedOut.Load() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// CloseWrite ends the raw peer's half of the stream, when it can.
func (s *h2Stream) CloseWrite() error {
	if s.closeWrite == nil {
		return errors.ErrUnsupported
	}
	return s.closeWrite()
}

func (s *h2Stream) SetReadDeadline(t time.Time) error {
	s.rdMu.Lock()
	s.rdDeadline = t
	s.rdMu.Unlock()
	select {
	case s.rdPoke <- struct{}{}:
	default:
	}
	return nil
}

// SetWriteDeadline sets the deadline of the writes that start after it.
func (s *h2Stream) SetWriteDeadline(t time.Time) error {
	s.wdMu.Lock()
	s.wdDeadline = t
	s.wdMu.Unlock()
	return nil
}

func (s *h2Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// Close ends the raw peer's side: a write in flight is stopped, then the side's end runs, and
// the reading goroutine is waited for.
func (s *h2Stream) Close() error {
	s.closeOnce.Do(func() {
		s.wdMu.Lock()
		close(s.closed)
		writing := s.writing
		s.wdMu.Unlock()
		if writing {
			s.abort()
		}
		s.wmu.Lock() // the write has returned: nothing touches the stream after end
		s.end()
		s.wmu.Unlock()
		s.body.Close()
		<-s.loopDone
	})
	return nil
}

var _ rawConn = (*h2Stream)(nil)
