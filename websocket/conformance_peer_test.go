package websocket_test

// Raw-peer helpers for the Autobahn-style conformance suite (conformance_*_test.go).
//
// Every case runs five times: against our server and our client, over HTTP/1.1 (TCP) and over
// HTTP/2 (RFC 8441), and against our server in the events mode:
//
//   - "server/<case>": our server (websocket.Open behind httptest.NewServer, echoing every message)
//     is driven by a raw TCP client that does the opening handshake by hand and writes hand-built,
//     masked frames, exactly as Autobahn's fuzzingclient drives a server under test.
//   - "client/<case>": our client (websocket.Dial, echoing every message) is driven by a raw TCP
//     server that answers the handshake by hand (it computes Sec-WebSocket-Accept itself) and
//     writes hand-built, unmasked frames, as Autobahn's fuzzingserver does.
//   - "server-h2/<case>" and "client-h2/<case>": the same over an HTTP/2 stream opened by an
//     extended CONNECT; the raw peer's bytes are the stream's DATA (conformance_h2_test.go).
//   - "server-events/<case>": our server takes the connection with websocket.AcceptEvents and
//     echoes from OnMessage, over HTTP/1.1: on Linux the event loop reads it.
//
// The raw peer parses every frame our side sends and checks it against RFC 6455 (masking
// direction, RSV bits, opcodes, minimal length encoding, control-frame rules), then the case
// asserts the exact sequence of messages, pongs and close frames, and finally that the TCP
// connection gets closed (over HTTP/2: that the stream ends, with END_STREAM or RST_STREAM).
// Nothing here uses timing as an assertion: every wait is bounded by a deadline only so that a
// broken implementation cannot hang the suite.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/websocket"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// RSV bits as they appear in the first header byte, shifted down (RSV1 = 4, RSV2 = 2, RSV3 = 1),
// the way Autobahn numbers them ("RSV = 5" is RSV1|RSV3).
const (
	rsv1 byte = 4
	rsv2 byte = 2
	rsv3 byte = 1
)

const (
	// ioTimeout bounds one read or write of the raw peer.
	ioTimeout = 10 * time.Second
	// endpointTimeout bounds the life of our endpoint in one case.
	endpointTimeout = 60 * time.Second
	// finishTimeout bounds how long a case waits for our endpoint to finish at the end.
	finishTimeout = 15 * time.Second
	// failFastTimeout bounds the wait for a close frame that needs no more data from the raw peer
	// (fail-fast cases: the rest of the frame is withheld). Generous for a loopback answer; it
	// only keeps a broken implementation from costing ioTimeout per case.
	failFastTimeout = 3 * time.Second
	// caseCloseTimeout is the Options.CloseTimeout our endpoints run with: how long a Close may wait
	// for the peer's close frame. Short, so that a case where the peer cannot answer ends quickly.
	caseCloseTimeout = 500 * time.Millisecond
)

// side names the endpoint under test.
type side string

const (
	serverSide side = "server" // our server; the raw peer is a client
	clientSide side = "client" // our client; the raw peer is a server
)

var bothSides = []side{serverSide, clientSide}

// echoMode selects how our endpoint echoes messages.
type echoMode int

const (
	echoWrite     echoMode = iota // Read + Write: the common case
	echoSendFlush                 // Read + SendText/SendBinary + Flush: the guide's buffered style
	echoStream                    // Reader + Writer, copied in chunks: streaming and fragmentation
)

// endpointConfig configures our endpoint for one case.
type endpointConfig struct {
	opts  websocket.Options
	echo  echoMode
	chunk int // echoStream: bytes per Write on the Writer
	// hold keeps our side's code from closing anything after its Read failed: the server handler
	// does not return and the client does not call CloseNow until the case is over. It checks that
	// the Conn itself closes the TCP connection after a close handshake or a failure (RFC 6455
	// sections 5.5.1, 7.1.1 and 7.1.7), without help from the application.
	hold bool
	// with101 (client side only): bytes the raw server writes in the same Write as its
	// 101 response, i.e. frames that arrive together with the handshake response.
	with101 []byte
	// accept (server side only): our server takes the connection with websocket.Accept and
	// closes it with CloseNow once its echo loop ends, as an application that owns its
	// connections would, rather than running the loop in websocket.Open.
	accept bool
	// events (server side only): our server takes the connection with websocket.AcceptEvents
	// and echoes from OnMessage; OnClose's error stands for Read's.
	events bool
}

func defaultConfig() endpointConfig {
	return endpointConfig{opts: websocket.Options{CloseTimeout: caseCloseTimeout}}
}

// ourEnd is what the raw peer knows of our endpoint.
type ourEnd struct {
	errc    chan error    // the terminal error of the echo loop (from Read/Reader, or a wrapped write error)
	done    chan struct{} // closed when our endpoint's goroutine has fully finished
	release chan struct{} // closed at the end of the case (see endpointConfig.hold)
}

// echo runs our endpoint's echo loop on c, reports how it ended on errc and, with cfg.hold,
// keeps the connection until the case ends; it returns the loop's error.
func (our *ourEnd) echo(ctx context.Context, c *websocket.Conn, cfg endpointConfig) error {
	err := echoLoop(ctx, c, cfg)
	our.errc <- err
	if cfg.hold {
		select {
		case <-our.release:
		case <-time.After(endpointTimeout):
		}
	}
	return err
}

// rawConn is the raw peer's connection to our side: a TCP connection, or an HTTP/2 stream
// with emulated deadlines (h2Stream, conformance_h2_test.go).
type rawConn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// peer is the raw side of one case.
type peer struct {
	t    *testing.T
	side side // the side under test
	h2   bool // over an HTTP/2 stream rather than a TCP connection
	conn rawConn
	br   *bufio.Reader
	rng  *rand.Rand
	our  *ourEnd

	partial     *event        // data message from our side being reassembled
	maskKeys    [][4]byte     // masking keys of the frames our client sent
	readTimeout time.Duration // deadline of one frame read; 0 = ioTimeout
	gotErr      bool          // our terminal error was already taken from errc
	ourErr      error
	frameCount  int // frames received from our side
}

// isRawClient reports whether the raw peer plays the client (our server is under test).
func (p *peer) isRawClient() bool { return p.side == serverSide }

// conformanceCase is one entry of a case table.
type conformanceCase struct {
	id   string
	only side                  // "" = both sides
	cfg  func(*endpointConfig) // adjusts defaultConfig(); nil = defaults
	run  func(p *peer)
}

// transports are what every case runs over: HTTP/1.1, where the raw peer owns the TCP
// connection, and HTTP/2, where it owns one stream (conformance_h2_test.go).
var transports = []struct {
	suffix string // of the subtest's name: "server" + suffix
	start  func(t *testing.T, s side, cfg endpointConfig) *peer
	sides  []side
}{
	{"", startPeer, bothSides},
	{"-h2", startH2Peer, bothSides},
	{"-events", startEventsPeer, []side{serverSide}},
}

// runCases runs every case against our server and our client, over both transports, and
// against our server in the events mode: subtests "server/<id>", "client/<id>", "server-h2/<id>",
// "client-h2/<id>", "server-events/<id>". The five run at the same time (much of a case's time is
// spent waiting for our side), the cases of each one after another.
func runCases(t *testing.T, cases []conformanceCase) {
	t.Helper()
	var wg sync.WaitGroup
	for _, tr := range transports {
		for _, s := range tr.sides {
			wg.Go(func() {
				t.Run(string(s)+tr.suffix, func(t *testing.T) {
					for _, c := range cases {
						if c.only != "" && c.only != s {
							continue
						}
						cfg := defaultConfig()
						if c.cfg != nil {
							c.cfg(&cfg)
						}
						if cfg.accept && tr.suffix == "-events" {
							continue // Accept's variant of a case: the events mode runs it once
						}
						t.Run(c.id, func(t *testing.T) {
							p := tr.start(t, s, cfg)
							c.run(p)
						})
					}
				})
			})
		}
	}
	wg.Wait()
}

// startPeer starts our endpoint on side s and returns the raw peer connected to it, after the
// opening handshake. Cleanup closes everything and checks that our endpoint finished.
func startPeer(t *testing.T, s side, cfg endpointConfig) *peer {
	t.Helper()
	if s == serverSide {
		return startServerPeer(t, cfg)
	}
	return startClientPeer(t, cfg)
}

// startEventsPeer is startPeer for our server in the events mode.
func startEventsPeer(t *testing.T, s side, cfg endpointConfig) *peer {
	cfg.events = true
	return startServerPeer(t, cfg)
}

func newOurEnd() *ourEnd {
	return &ourEnd{errc: make(chan error, 1), done: make(chan struct{}), release: make(chan struct{})}
}

// echoLoop is the application our endpoint runs: echo every message until an error.
func echoLoop(ctx context.Context, c *websocket.Conn, cfg endpointConfig) error {
	if cfg.echo == echoStream {
		return echoStreams(ctx, c, cfg)
	}
	for {
		m, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := echoMessage(ctx, c, m, cfg); err != nil {
			return err
		}
	}
}

// echoMessage writes m back as cfg says: what echoLoop does with each message, and what our
// server does in OnMessage in the events mode.
func echoMessage(ctx context.Context, c *websocket.Conn, m websocket.Message, cfg endpointConfig) error {
	switch cfg.echo {
	case echoSendFlush:
		var err error
		if m.Type == websocket.MessageText {
			err = c.SendText(m.Data)
		} else {
			err = c.SendBinary(m.Data)
		}
		if err != nil {
			return fmt.Errorf("echo Send: %w", err)
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("echo Flush: %w", err)
		}
	case echoStream: // the events mode has whole messages; it writes them as a stream
		w, err := c.Writer(ctx, m.Type)
		if err != nil {
			return fmt.Errorf("echo Writer: %w", err)
		}
		for b := m.Data; len(b) > 0; b = b[min(len(b), streamChunk(cfg)):] {
			if _, err := w.Write(b[:min(len(b), streamChunk(cfg))]); err != nil {
				return fmt.Errorf("echo stream Write: %w", err)
			}
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("echo stream Close: %w", err)
		}
	default:
		if err := c.Write(ctx, m.Type, m.Data); err != nil {
			return fmt.Errorf("echo Write: %w", err)
		}
	}
	return nil
}

func streamChunk(cfg endpointConfig) int {
	if cfg.chunk <= 0 {
		return 4096
	}
	return cfg.chunk
}

// echoStreams is echoLoop with Reader and Writer, copied in chunks.
func echoStreams(ctx context.Context, c *websocket.Conn, cfg endpointConfig) error {
	buf := make([]byte, streamChunk(cfg))
	for {
		typ, r, err := c.Reader(ctx)
		if err != nil {
			return err
		}
		w, err := c.Writer(ctx, typ)
		if err != nil {
			return fmt.Errorf("echo Writer: %w", err)
		}
		for {
			n, rerr := r.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return fmt.Errorf("echo stream Write: %w", werr)
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("echo stream Close: %w", err)
		}
	}
}

func startServerPeer(t *testing.T, cfg endpointConfig) *peer {
	t.Helper()
	our := newOurEnd()
	ts := httptest.NewServer(ourServer(cfg, our))
	conn, err := net.DialTimeout("tcp", ts.Listener.Addr().String(), ioTimeout)
	if err != nil {
		ts.Close()
		t.Fatalf("dial test server: %v", err)
	}
	p := newRawClient(t, conn)
	p.our = our
	t.Cleanup(func() {
		close(our.release)
		conn.Close()
		select {
		case <-our.done:
		case <-time.After(finishTimeout):
			t.Errorf("our server's handler did not finish within %v after the case ended", finishTimeout)
		}
		ts.Close()
	})
	p.clientHandshake(ts.Listener.Addr().String())
	return p
}

// newRawClient is the raw peer as a client on conn, before the handshake.
func newRawClient(t *testing.T, conn net.Conn) *peer {
	return &peer{t: t, side: serverSide, conn: conn, br: bufio.NewReaderSize(conn, 64<<10),
		rng: rand.New(rand.NewSource(time.Now().UnixNano()))}
}

// ourServer is our server under test: websocket.Open running the echo loop, for one connection.
func ourServer(cfg endpointConfig, our *ourEnd) http.Handler {
	var handlerRan atomic.Bool
	var served atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !served.CompareAndSwap(false, true) {
			http.Error(w, "one connection per case", http.StatusServiceUnavailable)
			return
		}
		opts := &websocket.AcceptOptions{Options: cfg.opts}
		if cfg.events {
			serveEvents(w, r, opts, cfg, our)
			return
		}
		defer close(our.done)
		if cfg.accept {
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				our.errc <- fmt.Errorf("websocket.Accept: %w", err)
				return
			}
			defer c.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), endpointTimeout)
			defer cancel()
			our.echo(ctx, c, cfg)
			return
		}
		openErr := websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
			handlerRan.Store(true)
			ctx, cancel := context.WithTimeout(ctx, endpointTimeout)
			defer cancel()
			return our.echo(ctx, c, cfg)
		})
		if !handlerRan.Load() {
			our.errc <- fmt.Errorf("websocket.Open returned without running the handler: %v", openErr)
		}
	})
}

// serveEvents is ourServer in the events mode: the connection closes by itself after a close
// handshake or a failure, and OnClose reports how, as Read's error does in the other modes.
func serveEvents(w http.ResponseWriter, r *http.Request, opts *websocket.AcceptOptions, cfg endpointConfig, our *ourEnd) {
	ctx, cancel := context.WithTimeout(context.Background(), endpointTimeout)
	_, err := websocket.AcceptEvents(w, r, opts, websocket.Events{
		OnMessage: func(c *websocket.Conn, m websocket.Message) error { return echoMessage(ctx, c, m, cfg) },
		OnClose: func(c *websocket.Conn, err error) {
			cancel()
			our.errc <- err
			close(our.done)
		},
	})
	if err != nil {
		cancel()
		our.errc <- fmt.Errorf("websocket.AcceptEvents: %w", err)
		close(our.done)
	}
}

// clientHandshake writes an opening handshake request (RFC 6455 section 4.1) and checks the 101.
func (p *peer) clientHandshake(host string) {
	p.t.Helper()
	if err := p.tryClientHandshake(host, "/echo"); err != nil {
		p.t.Fatal(err)
	}
}

// tryClientHandshake is clientHandshake for target (a path and query), returning what went
// wrong rather than failing the test, for callers outside the test's goroutine (churn_test.go).
func (p *peer) tryClientHandshake(host, target string) error {
	keyBytes := make([]byte, 16)
	p.rng.Read(keyBytes)
	key := base64.StdEncoding.EncodeToString(keyBytes)
	req := "GET " + target + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n"
	p.conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(p.conn, req); err != nil {
		return fmt.Errorf("write handshake request: %w", err)
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return fmt.Errorf("read handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake: status %d %q, want 101", resp.StatusCode, resp.Status)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("handshake: Upgrade %q, want websocket", resp.Header.Get("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fmt.Errorf("handshake: Connection %q, want Upgrade", resp.Header.Values("Connection"))
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
		return fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return fmt.Errorf("handshake: server selected extensions %q that the client did not offer", ext)
	}
	p.conn.SetDeadline(time.Time{})
	return nil
}

func startClientPeer(t *testing.T, cfg endpointConfig) *peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	our := newOurEnd()
	dialed := make(chan struct{})
	url := "ws://" + ln.Addr().String() + "/echo"
	go runOurClient(url, &websocket.DialOptions{Options: cfg.opts}, cfg, our, dialed)

	ln.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout))
	conn, err := ln.Accept()
	ln.Close()
	if err != nil {
		<-our.done
		t.Fatalf("accept our client's connection: %v (client: %v)", err, drain(our.errc))
	}
	p := &peer{t: t, side: clientSide, conn: conn, br: bufio.NewReaderSize(conn, 64<<10),
		rng: rand.New(rand.NewSource(time.Now().UnixNano())), our: our}
	t.Cleanup(func() {
		close(our.release)
		conn.Close()
		select {
		case <-our.done:
		case <-time.After(finishTimeout):
			t.Errorf("our client's goroutine did not finish within %v after the case ended", finishTimeout)
		}
	})
	p.serverHandshake(cfg.with101)
	select {
	case <-dialed:
	case err := <-our.errc:
		t.Fatalf("our client failed the handshake: %v", err)
	case <-time.After(ioTimeout):
		t.Fatalf("websocket.Dial did not return within %v after the 101 response", ioTimeout)
	}
	return p
}

// runOurClient is our client under test: websocket.Dial, then the echo loop. It closes dialed
// once connected, and our.done when it has finished.
func runOurClient(url string, opts *websocket.DialOptions, cfg endpointConfig, our *ourEnd, dialed chan struct{}) {
	defer close(our.done)
	ctx, cancel := context.WithTimeout(context.Background(), endpointTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		our.errc <- fmt.Errorf("websocket.Dial: %w", err)
		return
	}
	close(dialed)
	our.echo(ctx, c, cfg)
	c.CloseNow()
}

func drain(c chan error) error {
	select {
	case err := <-c:
		return err
	default:
		return nil
	}
}

// serverHandshake reads our client's opening handshake and answers 101 (RFC 6455 section 4.2.2).
func (p *peer) serverHandshake(extra []byte) {
	t := p.t
	t.Helper()
	p.conn.SetDeadline(time.Now().Add(ioTimeout))
	req, err := http.ReadRequest(p.br)
	if err != nil {
		t.Fatalf("read our client's handshake request: %v", err)
	}
	if req.Method != http.MethodGet {
		t.Fatalf("handshake request method %q, want GET", req.Method)
	}
	if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake request Upgrade %q, want websocket", req.Header.Get("Upgrade"))
	}
	if !headerHasToken(req.Header, "Connection", "upgrade") {
		t.Fatalf("handshake request Connection %q, want Upgrade", req.Header.Values("Connection"))
	}
	if v := req.Header.Get("Sec-WebSocket-Version"); v != "13" {
		t.Fatalf("handshake request Sec-WebSocket-Version %q, want 13", v)
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		t.Fatalf("handshake request Sec-WebSocket-Key %q is not 16 base64-encoded bytes", key)
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n" +
		"\r\n"
	if _, err := p.conn.Write(append([]byte(resp), extra...)); err != nil {
		t.Fatalf("write 101 response: %v", err)
	}
	p.conn.SetDeadline(time.Time{})
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, s := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(s), token) {
				return true
			}
		}
	}
	return false
}

// ---- building frames ----

// frameSpec describes a frame the raw peer sends. The zero value of every option is the
// well-formed choice: minimal length encoding, masked iff the raw peer is the client.
type frameSpec struct {
	fin      bool
	rsv      byte
	opcode   byte
	payload  []byte
	lenBytes int     // 0: minimal; 2: force the 16-bit form (126); 8: force the 64-bit form (127)
	declLen  *uint64 // if set, the length written in the header instead of len(payload)
	mask     int     // 0: by role; +1: force masked; -1: force unmasked
	key      *[4]byte
}

type frameOpt func(*frameSpec)

func withRSV(r byte) frameOpt           { return func(f *frameSpec) { f.rsv = r } }
func withLenBytes(n int) frameOpt       { return func(f *frameSpec) { f.lenBytes = n } }
func withDeclaredLen(n uint64) frameOpt { return func(f *frameSpec) { f.declLen = &n } }
func forceMasked() frameOpt             { return func(f *frameSpec) { f.mask = 1 } }
func forceUnmasked() frameOpt           { return func(f *frameSpec) { f.mask = -1 } }
func withKey(k [4]byte) frameOpt        { return func(f *frameSpec) { f.key = &k } }

// frame encodes one frame as the raw peer would send it.
func (p *peer) frame(opcode byte, fin bool, payload []byte, opts ...frameOpt) []byte {
	b, _ := p.frameH(opcode, fin, payload, opts...)
	return b
}

// frameH is frame, and also returns the header length.
func (p *peer) frameH(opcode byte, fin bool, payload []byte, opts ...frameOpt) ([]byte, int) {
	f := frameSpec{fin: fin, opcode: opcode, payload: payload}
	for _, o := range opts {
		o(&f)
	}
	masked := p.isRawClient()
	if f.mask > 0 {
		masked = true
	} else if f.mask < 0 {
		masked = false
	}
	n := uint64(len(f.payload))
	if f.declLen != nil {
		n = *f.declLen
	}
	var h []byte
	b0 := f.opcode&0x0f | (f.rsv&7)<<4
	if f.fin {
		b0 |= 0x80
	}
	var mbit byte
	if masked {
		mbit = 0x80
	}
	switch {
	case f.lenBytes == 8 || (f.lenBytes == 0 && n > 0xffff):
		h = append(h, b0, mbit|127)
		h = binary.BigEndian.AppendUint64(h, n)
	case f.lenBytes == 2 || (f.lenBytes == 0 && n > 125):
		h = append(h, b0, mbit|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, b0, mbit|byte(n))
	}
	out := make([]byte, 0, len(h)+4+len(f.payload))
	out = append(out, h...)
	data := append([]byte(nil), f.payload...)
	if masked {
		var k [4]byte
		if f.key != nil {
			k = *f.key
		} else {
			binary.LittleEndian.PutUint32(k[:], p.rng.Uint32())
		}
		out = append(out, k[:]...)
		maskBytes(k, 0, data)
	}
	return append(out, data...), len(out)
}

// maskBytes XORs b with the masking key k, starting at key position pos (RFC 6455 section 5.3).
func maskBytes(k [4]byte, pos int, b []byte) {
	// Rotate the key so that b[0] uses k[pos%4], then XOR 8 bytes at a time (fast under -race).
	var rk [8]byte
	for i := range rk {
		rk[i] = k[(pos+i)%4]
	}
	k64 := binary.LittleEndian.Uint64(rk[:])
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^k64)
	}
	for j := 0; i < len(b); i, j = i+1, j+1 {
		b[i] ^= rk[j%4]
	}
}

// Shorthands for well-formed frames of the raw peer's role.
func (p *peer) text(s string, fin bool) []byte   { return p.frame(opText, fin, []byte(s)) }
func (p *peer) binary(b []byte, fin bool) []byte { return p.frame(opBinary, fin, b) }
func (p *peer) cont(b []byte, fin bool) []byte   { return p.frame(opCont, fin, b) }
func (p *peer) ping(b []byte) []byte             { return p.frame(opPing, true, b) }
func (p *peer) pong(b []byte) []byte             { return p.frame(opPong, true, b) }

// closeFrame builds a close frame with a status code and a reason (RFC 6455 section 5.5.1).
func (p *peer) closeFrame(code uint16, reason string) []byte {
	return p.frame(opClose, true, closePayload(code, reason))
}

func closePayload(code uint16, reason string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return append(b, reason...)
}

// ---- sending ----

func (p *peer) write(b []byte) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("raw peer write (%d bytes): %v", len(b), err)
	}
}

// send writes the frames in one Write ("one chop").
func (p *peer) send(frames ...[]byte) {
	p.t.Helper()
	p.write(bytes.Join(frames, nil))
}

// sendEach writes each frame with its own Write.
func (p *peer) sendEach(frames ...[]byte) {
	p.t.Helper()
	for _, f := range frames {
		p.write(f)
	}
}

// sendChopped writes the frames' bytes in Writes of at most chop bytes (chop 1 = octet-wise).
func (p *peer) sendChopped(chop int, frames ...[]byte) {
	p.t.Helper()
	b := bytes.Join(frames, nil)
	for len(b) > 0 {
		n := min(chop, len(b))
		p.write(b[:n])
		b = b[n:]
	}
}

// sendAsync writes b from another goroutine (for payloads large enough that the raw peer must
// read our echo while still writing). The returned channel yields the write's error.
func (p *peer) sendAsync(b []byte, chop int) <-chan error {
	errc := make(chan error, 1)
	p.conn.SetWriteDeadline(time.Now().Add(ioTimeout * 3))
	go func() {
		var err error
		if chop <= 0 {
			_, err = p.conn.Write(b)
		} else {
			for len(b) > 0 && err == nil {
				n := min(chop, len(b))
				_, err = p.conn.Write(b[:n])
				b = b[n:]
			}
		}
		errc <- err
	}()
	return errc
}

// ---- receiving ----

// wireFrame is a frame our side sent, as parsed by the raw peer.
type wireFrame struct {
	fin     bool
	rsv     byte
	opcode  byte
	masked  bool
	key     [4]byte
	payload []byte // unmasked
}

// readFrame reads one frame from our side and checks the rules every frame our side sends must
// follow. Violations are reported with Errorf (the case goes on, to report as much as possible).
func (p *peer) readFrame() (wireFrame, error) {
	var f wireFrame
	p.conn.SetReadDeadline(time.Now().Add(p.timeout()))
	var h [2]byte
	if _, err := io.ReadFull(p.br, h[:]); err != nil {
		return f, err
	}
	f.fin = h[0]&0x80 != 0
	f.rsv = h[0] >> 4 & 7
	f.opcode = h[0] & 0x0f
	f.masked = h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	where := fmt.Sprintf("frame #%d from our %s (opcode %#x)", p.frameCount+1, p.side, f.opcode)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(p.br, e[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
		if n < 126 {
			p.t.Errorf("%s: length %d encoded in the 16-bit form; RFC 6455 5.2 requires the minimal encoding", where, n)
		}
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(p.br, e[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(e[:])
		if n <= 0xffff {
			p.t.Errorf("%s: length %d encoded in the 64-bit form; RFC 6455 5.2 requires the minimal encoding", where, n)
		}
		if n > 1<<31 {
			return f, fmt.Errorf("%s: absurd payload length %d", where, n)
		}
	}
	if f.masked {
		if _, err := io.ReadFull(p.br, f.key[:]); err != nil {
			return f, err
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(p.br, f.payload); err != nil {
		return f, err
	}
	if f.masked {
		maskBytes(f.key, 0, f.payload)
	}
	p.frameCount++

	switch p.side {
	case serverSide:
		if f.masked {
			p.t.Errorf("%s is masked; RFC 6455 5.1: a server MUST NOT mask any frames it sends", where)
		}
	case clientSide:
		if !f.masked {
			p.t.Errorf("%s is not masked; RFC 6455 5.1/5.3: a client MUST mask every frame it sends", where)
		} else {
			p.maskKeys = append(p.maskKeys, f.key)
		}
	}
	if f.rsv != 0 {
		p.t.Errorf("%s has RSV bits %03b set without a negotiated extension (RFC 6455 5.2)", where, f.rsv)
	}
	switch f.opcode {
	case opCont, opText, opBinary:
	case opClose, opPing, opPong:
		if !f.fin {
			p.t.Errorf("%s: control frame is fragmented (RFC 6455 5.5)", where)
		}
		if n > 125 {
			p.t.Errorf("%s: control frame payload %d > 125 bytes (RFC 6455 5.5)", where, n)
		}
	default:
		p.t.Errorf("%s: reserved opcode (RFC 6455 5.2)", where)
	}
	return f, nil
}

func (p *peer) timeout() time.Duration {
	if p.readTimeout > 0 {
		return p.readTimeout
	}
	return ioTimeout
}

// event kinds besides the opcodes.
const (
	evClosed  byte = 0xf0 // TCP connection closed (EOF or reset); over HTTP/2: the stream ended (END_STREAM or RST_STREAM)
	evTimeout byte = 0xf1 // nothing within ioTimeout
	evError   byte = 0xf2 // another read error
)

// event is a message, a control frame, or the end of the connection, as seen by the raw peer.
type event struct {
	kind    byte // opText, opBinary (whole messages), opPing, opPong, opClose, or evClosed/evTimeout/evError
	payload []byte
	frames  []wireFrame // data messages: the frames they came in (payloads dropped when large)
	err     error
	waited  time.Duration // evTimeout: the deadline that passed
}

func (e event) String() string {
	switch e.kind {
	case evClosed:
		return fmt.Sprintf("connection closed (%v)", e.err)
	case evTimeout:
		return fmt.Sprintf("nothing received within %v", e.waited)
	case evError:
		return fmt.Sprintf("read error: %v", e.err)
	case opClose:
		return "close frame " + describeClose(e.payload)
	}
	return fmt.Sprintf("%s %s", opName(e.kind), short(e.payload))
}

func opName(op byte) string {
	switch op {
	case opCont:
		return "continuation"
	case opText:
		return "text message"
	case opBinary:
		return "binary message"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return fmt.Sprintf("opcode %#x", op)
}

func describeClose(b []byte) string {
	if len(b) == 0 {
		return "(empty payload)"
	}
	if len(b) == 1 {
		return fmt.Sprintf("(1-byte payload %x)", b)
	}
	return fmt.Sprintf("code %d reason %q", binary.BigEndian.Uint16(b), b[2:])
}

// short renders a payload for messages: small ones in full, large ones by length and a hash-like prefix.
func short(b []byte) string {
	if len(b) <= 64 {
		if utf8.Valid(b) {
			return fmt.Sprintf("%q", b)
		}
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("(%d bytes, starting %x)", len(b), b[:16])
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE)
}

// next returns the next event from our side: a whole data message (fragments reassembled),
// a control frame, or the end of the connection.
func (p *peer) next() event {
	for {
		f, err := p.readFrame()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				return event{kind: evTimeout, err: err, waited: p.timeout()}
			case isClosedErr(err):
				return event{kind: evClosed, err: err}
			default:
				return event{kind: evError, err: err}
			}
		}
		switch f.opcode {
		case opText, opBinary:
			if p.partial != nil {
				p.t.Errorf("our %s started a new %s while a fragmented %s was unfinished (RFC 6455 5.4)",
					p.side, opName(f.opcode), opName(p.partial.kind))
			}
			p.partial = &event{kind: f.opcode}
		case opCont:
			if p.partial == nil {
				p.t.Errorf("our %s sent a continuation frame with no message to continue (RFC 6455 5.4)", p.side)
				p.partial = &event{kind: opCont}
			}
		default:
			return event{kind: f.opcode, payload: f.payload}
		}
		p.partial.payload = append(p.partial.payload, f.payload...)
		if len(f.payload) > 256 {
			f.payload = nil
		}
		p.partial.frames = append(p.partial.frames, f)
		if f.fin {
			e := *p.partial
			p.partial = nil
			return e
		}
	}
}

// expectMessage requires that the next event is the data message (op, payload).
func (p *peer) expectMessage(op byte, payload []byte) event {
	p.t.Helper()
	e := p.next()
	if e.kind != op || !bytes.Equal(e.payload, payload) {
		p.t.Fatalf("got %v; want %s %s", e, opName(op), short(payload))
	}
	return e
}

func (p *peer) expectText(s string) event {
	p.t.Helper()
	return p.expectMessage(opText, []byte(s))
}

// expectPong requires that the next event is a pong with exactly this payload (RFC 6455 5.5.3).
func (p *peer) expectPong(payload []byte) {
	p.t.Helper()
	e := p.next()
	if e.kind != opPong || !bytes.Equal(e.payload, payload) {
		p.t.Fatalf("got %v; want pong %s (RFC 6455 5.5.2/5.5.3: a ping is answered by a pong with identical payload)",
			e, short(payload))
	}
}

// expectCloseFrame requires that the next event is a close frame and checks its payload is well
// formed (RFC 6455 5.5.1, 7.4); it returns the code (0 for an empty payload).
func (p *peer) expectCloseFrame(why string) (code uint16, reason string) {
	p.t.Helper()
	e := p.next()
	if e.kind != opClose {
		p.t.Fatalf("got %v; want a close frame (%s)", e, why)
	}
	switch {
	case len(e.payload) == 0:
		return 0, ""
	case len(e.payload) == 1:
		p.t.Fatalf("our %s sent a close frame with a 1-byte payload %x (RFC 6455 5.5.1)", p.side, e.payload)
	}
	code = binary.BigEndian.Uint16(e.payload)
	reason = string(e.payload[2:])
	if !utf8.ValidString(reason) {
		p.t.Errorf("our %s's close reason %x is not valid UTF-8 (RFC 6455 5.5.1)", p.side, e.payload[2:])
	}
	if !validWireCode(code) {
		p.t.Errorf("our %s sent close code %d, which must not be sent on the wire (RFC 6455 7.4)", p.side, code)
	}
	return code, reason
}

func validWireCode(c uint16) bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// expectFail requires that our side fails the connection: the next event is a close frame with
// exactly this code, then the TCP connection is closed; and our side's Read returned
// *websocket.CloseError{Code: code, Remote: false}. The raw peer answers the close frame, as a
// well-behaved peer would (that reply may fail, which is fine).
func (p *peer) expectFail(code websocket.StatusCode, rfc string) {
	p.t.Helper()
	got, reason := p.expectCloseFrame(fmt.Sprintf("our %s must fail the connection with %d: %s", p.side, code, rfc))
	if got != uint16(code) {
		p.t.Fatalf("our %s closed with code %d (reason %q); want %d: %s", p.side, got, reason, code, rfc)
	}
	p.replyClose(closePayload(got, ""))
	p.expectTCPClosed()
	p.expectOurCloseErr(code, false)
}

// expectFailFast is expectFail for cases where the raw peer withholds data our side must not
// wait for: the close frame has to come without it (bounded by failFastTimeout).
func (p *peer) expectFailFast(code websocket.StatusCode, rfc string) {
	p.t.Helper()
	p.readTimeout = failFastTimeout
	got, reason := p.expectCloseFrame(fmt.Sprintf("our %s must fail the connection with %d without the withheld data: %s", p.side, code, rfc))
	p.readTimeout = 0
	if got != uint16(code) {
		p.t.Fatalf("our %s closed with code %d (reason %q); want %d: %s", p.side, got, reason, code, rfc)
	}
	p.replyClose(closePayload(got, ""))
	p.expectTCPClosed()
	p.expectOurCloseErr(code, false)
}

// replyClose sends a close frame answering our side's close. Errors are ignored: our side may
// already have closed the TCP connection after failing it (RFC 6455 7.1.7).
func (p *peer) replyClose(payload []byte) {
	p.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	p.conn.Write(p.frame(opClose, true, payload))
}

// expectTCPClosed requires that, after the close frames, our side closes the TCP connection and
// sends nothing more (RFC 6455 5.5.1: no data after a close frame; 7.1.1). As the raw server, the
// peer first closes its write side, as a server should do first (7.1.1), then waits for our
// client's FIN. Over HTTP/2 the TCP connection is shared and stays open: our side must end its
// stream instead (RFC 8441 section 5: END_STREAM for a TCP FIN, RST_STREAM for a TCP RST); the raw
// server cannot end its own side first, as net/http ends a response only when its handler returns.
func (p *peer) expectTCPClosed() {
	p.t.Helper()
	if p.side == clientSide {
		if tc, ok := p.conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	p.expectEOF()
}

// expectEOF requires that our side closes the TCP connection and sends nothing more.
func (p *peer) expectEOF() {
	p.t.Helper()
	for {
		e := p.next()
		switch e.kind {
		case evClosed:
			return
		case evTimeout:
			p.t.Fatalf("our %s did not close %s within %v after the closing handshake (RFC 6455 5.5.1, 7.1.1%s)",
				p.side, p.connName(), ioTimeout, p.rfc8441())
		case evError:
			p.t.Fatalf("reading until our %s closes %s: %v", p.side, p.connName(), e.err)
		default:
			p.t.Fatalf("our %s sent %v after the close frame; RFC 6455 5.5.1: nothing may follow a close frame", p.side, e)
		}
	}
}

// connName names what our side must close at the end of a case.
func (p *peer) connName() string {
	if p.h2 {
		return "its HTTP/2 stream (END_STREAM or RST_STREAM)"
	}
	return "the TCP connection"
}

func (p *peer) rfc8441() string {
	if p.h2 {
		return "; RFC 8441 5: over HTTP/2 the stream's end stands for the TCP connection's"
	}
	return ""
}

// ourError returns the terminal error of our side's echo loop.
func (p *peer) ourError() error {
	p.t.Helper()
	if p.gotErr {
		return p.ourErr
	}
	select {
	case err := <-p.our.errc:
		p.gotErr, p.ourErr = true, err
		return err
	case <-time.After(ioTimeout):
		p.t.Fatalf("our %s's Read did not return within %v after the connection ended", p.side, ioTimeout)
		return nil
	}
}

// expectOurCloseErr requires that our side's Read returned *websocket.CloseError with this code
// and origin (API contract; Remote=true: the peer sent it).
func (p *peer) expectOurCloseErr(code websocket.StatusCode, remote bool) *websocket.CloseError {
	p.t.Helper()
	err := p.ourError()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		p.t.Fatalf("our %s's Read returned %T %v; want *websocket.CloseError{Code: %d, Remote: %v}", p.side, err, err, code, remote)
	}
	if ce.Code != code || ce.Remote != remote {
		p.t.Fatalf("our %s's Read returned CloseError{Code: %d, Reason: %q, Remote: %v}; want Code %d, Remote %v",
			p.side, ce.Code, ce.Reason, ce.Remote, code, remote)
	}
	wantEOF := remote && (code == websocket.StatusNormalClosure || code == websocket.StatusGoingAway)
	if errors.Is(err, io.EOF) != wantEOF {
		p.t.Errorf("errors.Is(%v, io.EOF) = %v; want %v (API: true exactly for a remote 1000/1001)", err, !wantEOF, wantEOF)
	}
	return ce
}

// closeNormally is how a case ends when nothing went wrong: the raw peer sends close 1000, our
// side must echo close 1000 and close the TCP connection, and our Read must have returned the
// remote CloseError 1000.
func (p *peer) closeNormally() {
	p.t.Helper()
	p.send(p.closeFrame(1000, ""))
	code, _ := p.expectCloseFrame("echo of the peer's close 1000 (RFC 6455 5.5.1)")
	if code != 1000 {
		p.t.Fatalf("our %s answered close 1000 with code %d; want 1000 echoed", p.side, code)
	}
	p.expectTCPClosed()
	p.expectOurCloseErr(websocket.StatusNormalClosure, true)
}

// repeat returns s repeated until it is n bytes long.
func repeat(s string, n int) []byte {
	b := bytes.Repeat([]byte(s), n/len(s)+1)
	return b[:n]
}
