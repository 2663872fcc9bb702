package interop

// Differential fuzzing of our frame codec against gobwas/ws's, an
// independent implementation of RFC 6455 framing. Our codec is internal to
// package websocket, so the comparison goes through exported behaviour: a
// server Conn made by websocket.Accept (over an in-memory connection handed
// over by a hijacking ResponseWriter) and a client Conn made by
// websocket.Dial (over an in-memory connection that answers the handshake).
//
// gobwas's frame functions parse and check headers (ws.ReadHeader,
// ws.CheckHeader) but leave some of the RFC's rules to the caller; the
// oracle below applies them, each marked "gobwas deviation" where gobwas
// itself would decide otherwise:
//   - a close payload of one byte is read by ws.ParseCloseFrameData as "no
//     code"; RFC 6455 §5.5.1 makes it a protocol error: 1002 here;
//   - ws.CheckCloseFrameData refuses 1012, 1013 and 1014, which IANA's
//     registry assigned after RFC 6455 (Service Restart, Try Again Later,
//     Bad Gateway); like gorilla's 1014 (see the suites), they are valid
//     here, as in our library;
//   - ws.CheckCloseFrameData accepts codes of 5000 and more, which no range
//     of RFC 6455 §7.4.2 allows (Autobahn case 7.13.2 expects them refused):
//     1002 here. Found by this fuzz target; its input is kept in testdata.
//   - ws.ReadHeader accepts a length encoded in more bytes than it needs (a
//     16-bit length below 126, a 64-bit one below 65536); RFC 6455 §5.2
//     says the minimal number of bytes MUST be used: 1002 here, as our
//     conformance cases 1.len.1 to 1.len.6 expect of us. Found by this
//     fuzz target too; its input is kept in testdata.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/websocket"
	"github.com/gobwas/ws"
)

// fuzzReadLimit is the read limit of both sides of the comparison.
const fuzzReadLimit = 1 << 16

// fuzzMessage is one data message: "text" or "binary", and its payload.
type fuzzMessage struct {
	kind string
	data []byte
}

// readOutcome is what a reading side made of a stream: its messages in
// order, then the close code it ended with: the code of the peer's close
// frame (1005 for none), or its own failure (1002, 1007, 1009), or 1006
// when the stream ended without a close frame.
type readOutcome struct {
	msgs []fuzzMessage
	code int
}

func (o readOutcome) String() string {
	var b strings.Builder
	for _, m := range o.msgs {
		fmt.Fprintf(&b, "%s(%d) ", m.kind, len(m.data))
	}
	return fmt.Sprintf("%send %d", b.String(), o.code)
}

// FuzzFrameCodecVsGobwas feeds arbitrary bytes, as a client's stream, to our
// server Conn and to gobwas's frame reader with the RFC's checks: both must
// read the same messages in the same order and end with the same close code.
func FuzzFrameCodecVsGobwas(f *testing.F) {
	f.Add(clientFrames([]fuzzMessage{{"text", []byte("hi")}, {"binary", []byte{0, 1, 2}}}, 0))
	f.Add(clientFrames([]fuzzMessage{{"text", []byte("héllo wörld")}}, 3))
	f.Add(append(clientFrames([]fuzzMessage{{"text", []byte("bye")}}, 0), 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8))
	f.Add([]byte{0x88, 0x81, 0, 0, 0, 0, 0x03})                                                       // a one-byte close payload
	f.Add([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xf6})                                                 // 1014
	f.Add([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                                  // 64-bit length, top bit set
	f.Add([]byte{0x81, 0x81, 0, 0, 0, 0, 0xff})                                                       // invalid UTF-8
	f.Add([]byte{0x01, 0x81, 0, 0, 0, 0, 0xce, 0x89, 0x80, 0, 0, 0, 0, 0x80, 0x81, 0, 0, 0, 0, 0xba}) // ping between fragments
	f.Add([]byte{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 1})                                                 // past the read limit
	f.Add([]byte{0x81, 0x02, 'h', 'i'})                                                               // unmasked from a client
	f.Fuzz(func(t *testing.T, in []byte) {
		ours := ourServerRead(t, in)
		theirs := gobwasRead(in, ws.StateServerSide)
		if ours.String() != theirs.String() || !sameMessages(ours.msgs, theirs.msgs) {
			t.Fatalf("input %x\nours:   %v\ngobwas: %v", in, ours, theirs)
		}
	})
}

// FuzzWellFormedVsGobwas builds a sequence of messages from spec and sends
// it three ways: written by our server Conn and read by gobwas as a client;
// written by our client Conn (masked) and read by gobwas as a server; and
// written by gobwas as a client (masked, fragmented) and read by our server
// Conn. Each way must carry exactly the messages sent.
func FuzzWellFormedVsGobwas(f *testing.F) {
	f.Add([]byte{0x10, 0, 0, 0x11, 0, 7, 0xf0, 0x0f, 200})
	f.Add([]byte{0x00, 0, 0, 0x01, 0x80, 0, 0xf1, 0xff, 1})
	f.Fuzz(func(t *testing.T, spec []byte) {
		msgs, chunks := specMessages(spec)
		check := func(way string, got readOutcome, wantCode int) {
			t.Helper()
			if !sameMessages(got.msgs, msgs) || got.code != wantCode {
				t.Fatalf("%s: sent %v, read %v", way, readOutcome{msgs, wantCode}, got)
			}
		}
		check("our server to gobwas", gobwasRead(ourWrites(t, false, msgs, chunks), ws.StateClientSide), 1000)
		check("our client to gobwas", gobwasRead(ourWrites(t, true, msgs, chunks), ws.StateServerSide), 1000)
		var in bytes.Buffer
		for i, m := range msgs {
			writeGobwasMessage(&in, m, chunks[i])
		}
		if err := ws.WriteFrame(&in, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))); err != nil {
			t.Fatal(err)
		}
		check("gobwas to our server", ourServerRead(t, in.Bytes()), 1000)
	})
}

// specMessages turns each 3 bytes of spec into a message: its kind, its
// size (up to 4 KiB + 255) and the size of the pieces it is written in
// (0: whole).
func specMessages(spec []byte) ([]fuzzMessage, []int) {
	var msgs []fuzzMessage
	var chunks []int
	for ; len(spec) >= 3 && len(msgs) < 16; spec = spec[3:] {
		size := int(spec[0]>>4)<<8 | int(spec[1])
		if spec[0]&1 == 0 {
			text := []byte(strings.Repeat("héllo wörld ✓ ", size/16+1))
			for size > 0 && !utf8.Valid(text[:size]) {
				size--
			}
			msgs = append(msgs, fuzzMessage{"text", text[:size]})
		} else {
			b := make([]byte, size)
			for i := range b {
				b[i] = byte(i*31 + 7)
			}
			msgs = append(msgs, fuzzMessage{"binary", b})
		}
		chunks = append(chunks, int(spec[2]))
	}
	return msgs, chunks
}

func sameMessages(a, b []fuzzMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].kind != b[i].kind || !bytes.Equal(a[i].data, b[i].data) {
			return false
		}
	}
	return true
}

// clientFrames is msgs as a client sends them, masked, in pieces of chunk
// bytes (0: whole), written by gobwas.
func clientFrames(msgs []fuzzMessage, chunk int) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		writeGobwasMessage(&b, m, chunk)
	}
	return b.Bytes()
}

// writeGobwasMessage writes m with gobwas's frame functions as a client:
// masked, fragmented into pieces of chunk bytes when chunk > 0.
func writeGobwasMessage(w io.Writer, m fuzzMessage, chunk int) {
	op := ws.OpText
	if m.kind == "binary" {
		op = ws.OpBinary
	}
	p := m.data
	if chunk == 0 {
		chunk = len(p)
	}
	for first := true; ; first = false {
		n := min(chunk, len(p))
		fop := ws.OpContinuation
		if first {
			fop = op
		}
		frame := ws.NewFrame(fop, n == len(p), bytes.Clone(p[:n]))
		_ = ws.WriteFrame(w, ws.MaskFrameInPlace(frame))
		p = p[n:]
		if len(p) == 0 {
			return
		}
	}
}

// gobwasRead reads a stream with gobwas's frame functions, as the side
// state says (ws.StateServerSide: the frames must be masked), applying the
// RFC's rules that gobwas leaves to its caller.
func gobwasRead(in []byte, state ws.State) readOutcome {
	r := bytes.NewReader(in)
	var o readOutcome
	var cur []byte
	kind := ""
	for {
		start := len(in) - r.Len()
		h, err := ws.ReadHeader(r)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			o.code = 1006
			return o
		}
		if err != nil { // ws.ErrHeaderLengthMSB: the top bit of a 64-bit length
			o.code = 1002
			return o
		}
		// gobwas deviation: a length not in the fewest bytes (see the file's
		// header comment).
		if lenField := in[start+1] & 0x7f; lenField == 126 && h.Length < 126 || lenField == 127 && h.Length <= 0xffff {
			o.code = 1002
			return o
		}
		if err := ws.CheckHeader(h, state); err != nil {
			o.code = 1002
			return o
		}
		if !h.OpCode.IsControl() && int64(len(cur))+h.Length > fuzzReadLimit {
			o.code = 1009
			return o
		}
		payload := make([]byte, h.Length)
		n, err := io.ReadFull(r, payload)
		if h.Masked {
			ws.Cipher(payload[:n], h.Mask, 0)
		}
		if err != nil {
			// Text is checked as it arrives (RFC 6455 §8.1, Autobahn 6.4):
			// invalid UTF-8 before the stream's end fails first.
			o.code = 1006
			if h.OpCode == ws.OpText || h.OpCode == ws.OpContinuation && kind == "text" {
				if !validUTF8Prefix(append(cur, payload[:n]...)) {
					o.code = 1007
				}
			}
			return o
		}
		switch h.OpCode {
		case ws.OpClose:
			o.code = gobwasCloseCode(payload)
			return o
		case ws.OpPing, ws.OpPong:
			continue
		case ws.OpText:
			kind = "text"
		case ws.OpBinary:
			kind = "binary"
		}
		cur = append(cur, payload...)
		if kind == "text" && !validUTF8Prefix(cur) {
			o.code = 1007
			return o
		}
		if !h.Fin {
			state = state.Set(ws.StateFragmented)
			continue
		}
		state = state.Clear(ws.StateFragmented)
		if kind == "text" && !utf8.Valid(cur) {
			o.code = 1007
			return o
		}
		o.msgs = append(o.msgs, fuzzMessage{kind, cur})
		cur = nil
	}
}

// gobwasCloseCode is the code a reader ends with on a close frame's payload.
func gobwasCloseCode(payload []byte) int {
	switch len(payload) {
	case 0:
		return 1005
	case 1: // gobwas deviation: it reads one byte as no code
		return 1002
	}
	code, reason := ws.ParseCloseFrameData(payload)
	err := ws.CheckCloseFrameData(code, reason)
	switch {
	case err != nil && code >= 1012 && code <= 1014 && utf8.ValidString(reason):
		err = nil // gobwas deviation: codes registered after RFC 6455
	case code >= 5000:
		err = errors.New("gobwas deviation: a code outside every range")
	}
	if err != nil {
		return 1002
	}
	return int(code)
}

// validUTF8Prefix reports whether b can still become valid UTF-8: it is
// valid but for the start of one incomplete character at its end.
func validUTF8Prefix(b []byte) bool {
	for k := 0; k <= 3 && k <= len(b); k++ {
		head, tail := b[:len(b)-k], b[len(b)-k:]
		if utf8.Valid(head) && (k == 0 || !utf8.FullRune(tail) && utf8.RuneStart(tail[0])) {
			return true
		}
	}
	return false
}

// ourServerRead reads in, as a client's stream after its handshake, with a
// server Conn made by websocket.Accept.
func ourServerRead(t *testing.T, in []byte) readOutcome {
	conn := &memConn{in: bytes.NewReader(in)}
	c := acceptMem(t, conn)
	defer c.CloseNow()
	var o readOutcome
	for range 1000 {
		msg, err := c.Read(t.Context())
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("Read: %v, not a CloseError", err)
			}
			o.code = int(ce.Code)
			return o
		}
		kind := "binary"
		if msg.Type == websocket.MessageText {
			kind = "text"
		}
		o.msgs = append(o.msgs, fuzzMessage{kind, msg.Data})
	}
	t.Fatal("1000 messages from a short input")
	return o
}

// ourWrites writes msgs with our Conn, the client's (made by Dial) or the
// server's (made by Accept), then closes with 1000, and returns the frames
// it wrote. A message with a chunk size is streamed through Writer in
// pieces of that size; the others are sent whole with SendText/SendBinary.
func ourWrites(t *testing.T, client bool, msgs []fuzzMessage, chunks []int) []byte {
	var c *websocket.Conn
	var conn *memConn
	if client {
		conn = &memConn{handshake: true, in: bytes.NewReader(nil)}
		c = dialMem(t, conn)
	} else {
		conn = &memConn{in: bytes.NewReader(nil)}
		c = acceptMem(t, conn)
		conn.out.Reset() // the 101 response
	}
	ctx := t.Context()
	for i, m := range msgs {
		typ := websocket.MessageText
		if m.kind == "binary" {
			typ = websocket.MessageBinary
		}
		var err error
		switch {
		case chunks[i] == 0 && typ == websocket.MessageText:
			err = c.SendText(m.data)
		case chunks[i] == 0:
			err = c.SendBinary(m.data)
		default:
			var w io.WriteCloser
			if w, err = c.Writer(ctx, typ); err != nil {
				break
			}
			for p := m.data; len(p) > 0 && err == nil; {
				n := min(chunks[i], len(p))
				_, err = w.Write(p[:n])
				p = p[n:]
			}
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Fatalf("writing message %d: %v", i, err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// Close waits for the peer's close frame: the memConn has none to give,
	// so it ends at once with the stream's end; the close frame is written.
	_ = c.Close(websocket.StatusNormalClosure, "")
	return conn.written()
}

// acceptMem runs websocket.Accept with conn as the hijacked connection.
func acceptMem(t *testing.T, conn *memConn) *websocket.Conn {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	opts := &websocket.AcceptOptions{Options: websocket.Options{ReadLimit: fuzzReadLimit, CloseTimeout: time.Second,
		Compression: &websocket.CompressionOptions{Disabled: true}}}
	c, err := websocket.Accept(&hijackRecorder{header: http.Header{}, conn: conn}, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dialMem runs websocket.Dial over conn, which answers the handshake.
func dialMem(t *testing.T, conn *memConn) *websocket.Conn {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	c, _, err := websocket.Dial(t.Context(), "ws://example.com/", &websocket.DialOptions{HTTPClient: client,
		Options: websocket.Options{ReadLimit: fuzzReadLimit, CloseTimeout: time.Second,
			Compression: &websocket.CompressionOptions{Disabled: true}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hijackRecorder is an http.ResponseWriter whose Hijack hands over conn.
type hijackRecorder struct {
	header http.Header
	conn   net.Conn
}

func (w *hijackRecorder) Header() http.Header         { return w.header }
func (w *hijackRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijackRecorder) WriteHeader(int)             {}
func (w *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// memConn is an in-memory net.Conn: reads come from in, then io.EOF;
// writes are kept. With handshake set it first plays a server's part of
// the opening handshake: once the request has been written, reads return
// the 101 response with the right Sec-WebSocket-Accept.
type memConn struct {
	in        *bytes.Reader
	handshake bool

	mu       sync.Mutex
	cond     *sync.Cond
	out      bytes.Buffer
	answered bool
	closed   bool
}

func (c *memConn) wait() {
	if c.cond == nil {
		c.cond = sync.NewCond(&c.mu)
	}
	c.cond.Wait()
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.handshake && !c.answered && !c.closed {
		c.wait()
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.in.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.out.Write(p)
	if c.handshake && !c.answered {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(c.out.Bytes())))
		if err != nil {
			return len(p), nil // not all of it yet
		}
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptFor(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
		c.in = bytes.NewReader([]byte(resp))
		c.out.Reset()
		c.answered = true
		if c.cond != nil {
			c.cond.Broadcast()
		}
	}
	return len(p), nil
}

func (c *memConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cond != nil {
		c.cond.Broadcast()
	}
	return nil
}

func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// acceptFor is the Sec-WebSocket-Accept answering key (RFC 6455 §4.2.2).
func acceptFor(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}
