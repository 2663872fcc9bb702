package micro

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	gorilla "github.com/gorilla/websocket"
	"github.com/lxzan/gws"
)

// The sizes match the lead's benchmarks in the websocket package.
var (
	maskSizes    = []int{16, 128, 1024, 16 << 10}
	messageSizes = []int{64, 1024}
)

const batch = 256 // frames prepared at once for the read benchmarks

// BenchmarkMask: gobwas/ws exports its masking (ws.Cipher); a byte-at-a-time
// loop is the reference every word-at-a-time implementation should beat.
func BenchmarkMask(b *testing.B) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, n := range maskSizes {
		p := make([]byte, n)
		b.Run("gobwas/"+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				ws.Cipher(p, key, 0)
			}
		})
		b.Run("bytewise/"+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				for i := range p {
					p[i] ^= key[i&3]
				}
			}
		})
	}
}

// BenchmarkFrameHeader: gobwas/ws's exported WriteHeader and ReadHeader on
// the same header as the websocket package's benchmark (masked, 4 KiB).
func BenchmarkFrameHeader(b *testing.B) {
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{0x12, 0x34, 0x56, 0x78}, Length: 1 << 12}
	var buf bytes.Buffer
	b.Run("gobwas/encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := ws.WriteHeader(&buf, h); err != nil {
				b.Fatal(err)
			}
		}
	})
	buf.Reset()
	_ = ws.WriteHeader(&buf, h)
	enc := buf.Bytes()
	r := bytes.NewReader(enc)
	b.Run("gobwas/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(enc)
			if _, err := ws.ReadHeader(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// clientFrames is batch masked text frames of n 'a' bytes, as a client sends them.
func clientFrames(n int) []byte {
	payload := bytes.Repeat([]byte{'a'}, n)
	var one bytes.Buffer
	if err := ws.WriteFrame(&one, ws.MaskFrame(ws.NewTextFrame(payload))); err != nil {
		panic(err)
	}
	return bytes.Repeat(one.Bytes(), batch)
}

// fakeConn is a server's view of a client: reads serve prepared bytes in a
// loop (up to a total, then EOF), writes are discarded.
type fakeConn struct {
	in    []byte
	off   int
	left  int64 // bytes still to serve; <0: no limit
	wrote int64
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	if c.off == len(c.in) {
		c.off = 0
	}
	n := copy(p, c.in[c.off:])
	if c.left > 0 && int64(n) > c.left {
		n = int(c.left)
	}
	c.off += n
	if c.left > 0 {
		c.left -= int64(n)
	}
	return n, nil
}

func (c *fakeConn) Write(p []byte) (int, error)        { c.wrote += int64(len(p)); return len(p), nil }
func (c *fakeConn) Close() error                       { return nil }
func (c *fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// hijackWriter lets net/http-based upgraders take over a fakeConn.
type hijackWriter struct {
	conn   net.Conn
	header http.Header
}

func (w *hijackWriter) Header() http.Header         { return w.header }
func (w *hijackWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijackWriter) WriteHeader(int)             {}
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

func upgradeRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/ws", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return r
}

func gorillaConn(b testing.TB, fc *fakeConn) *gorilla.Conn {
	u := gorilla.Upgrader{}
	c, err := u.Upgrade(&hijackWriter{conn: fc, header: http.Header{}}, upgradeRequest(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func coderConn(b testing.TB, fc *fakeConn) *coder.Conn {
	c, err := coder.Accept(&hijackWriter{conn: fc, header: http.Header{}}, upgradeRequest(), nil)
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	b.Cleanup(func() { c.CloseNow() })
	return c
}

type gwsCounter struct {
	gws.BuiltinEventHandler
	n int
}

func (h *gwsCounter) OnMessage(socket *gws.Conn, message *gws.Message) {
	h.n++
	message.Close()
}

func gwsConn(b testing.TB, fc *fakeConn, h gws.Event) *gws.Conn {
	u := gws.NewUpgrader(h, nil)
	c, err := u.UpgradeFromConn(fc, bufio.NewReader(fc), upgradeRequest())
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkReadMessage: the server's read path alone, one whole text message
// of n bytes at a time from prepared masked frames (the websocket package's
// BenchmarkReadMessage does the same for Duplex).
func BenchmarkReadMessage(b *testing.B) {
	for _, n := range messageSizes {
		in := clientFrames(n)
		b.Run("gobwas/"+strconv.Itoa(n), func(b *testing.B) {
			fc := &fakeConn{in: in, left: -1}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := wsutil.ReadClientData(fc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("gorilla/"+strconv.Itoa(n), func(b *testing.B) {
			fc := &fakeConn{left: -1}
			c := gorillaConn(b, fc)
			fc.in = in
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.ReadMessage(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("coder/"+strconv.Itoa(n), func(b *testing.B) {
			fc := &fakeConn{left: -1}
			c := coderConn(b, fc)
			fc.in = in
			ctx := context.Background()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("gws/"+strconv.Itoa(n), func(b *testing.B) {
			// gws reads only through its event loop: ReadLoop runs until the
			// prepared bytes for b.N messages are used up.
			frameLen := int64(len(in) / batch)
			fc := &fakeConn{left: -1}
			h := &gwsCounter{}
			c := gwsConn(b, fc, h)
			fc.in, fc.off = in, 0
			fc.left = frameLen * int64(b.N)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			c.ReadLoop()
			b.StopTimer()
			if h.n != b.N {
				b.Fatalf("read %d messages, want %d", h.n, b.N)
			}
		})
	}
}

// BenchmarkWriteMessage: the server's write path, one text message of n
// bytes written to a connection that discards it.
func BenchmarkWriteMessage(b *testing.B) {
	for _, n := range messageSizes {
		p := bytes.Repeat([]byte{'a'}, n)
		b.Run("gobwas/"+strconv.Itoa(n), func(b *testing.B) {
			fc := &fakeConn{}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := wsutil.WriteServerMessage(fc, ws.OpText, p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("gorilla/"+strconv.Itoa(n), func(b *testing.B) {
			c := gorillaConn(b, &fakeConn{})
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.WriteMessage(gorilla.TextMessage, p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("coder/"+strconv.Itoa(n), func(b *testing.B) {
			c := coderConn(b, &fakeConn{})
			ctx := context.Background()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Write(ctx, coder.MessageText, p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("gws/"+strconv.Itoa(n), func(b *testing.B) {
			c := gwsConn(b, &fakeConn{}, &gws.BuiltinEventHandler{})
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.WriteMessage(gws.OpcodeText, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPlumbing keeps the benchmarks' plumbing honest in the ordinary test
// run: every peer upgrades over a fakeConn and reads exactly one message.
func TestPlumbing(t *testing.T) {
	in := clientFrames(64)
	one := int64(len(in) / batch)
	fc := &fakeConn{in: in, left: one}
	if msg, _, err := wsutil.ReadClientData(fc); err != nil || len(msg) != 64 {
		t.Fatalf("gobwas: %v %d", err, len(msg))
	}
	if _, _, err := wsutil.ReadClientData(fc); !errors.Is(err, io.EOF) {
		t.Fatalf("gobwas: want EOF after one frame, got %v", err)
	}

	fc = &fakeConn{left: -1}
	gc := gorillaConn(t, fc)
	fc.in, fc.left = in, one
	if _, msg, err := gc.ReadMessage(); err != nil || len(msg) != 64 {
		t.Fatalf("gorilla: %v %d", err, len(msg))
	}

	fc = &fakeConn{left: -1}
	cc := coderConn(t, fc)
	fc.in, fc.left = in, one
	if _, msg, err := cc.Read(context.Background()); err != nil || len(msg) != 64 {
		t.Fatalf("coder: %v %d", err, len(msg))
	}

	fc = &fakeConn{left: -1}
	h := &gwsCounter{}
	wc := gwsConn(t, fc, h)
	fc.in, fc.off, fc.left = in, 0, one
	wc.ReadLoop()
	if h.n != 1 {
		t.Fatalf("gws: read %d messages, want 1", h.n)
	}
}
