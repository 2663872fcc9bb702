package websocket

import (
	"bufio"
	"bytes"
	stdflate "compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// chatLike returns n bytes of JSON-ish text that compresses about as well
// as chat traffic does.
func chatLike(rng *rand.Rand, n int) []byte {
	words := []string{"hello", "duplex", "websocket", "message", "room", "text", "\"user\":", "{\"text\":", "é", "日本", "🙂", "\n"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	out := b.Bytes()[:n]
	for !utf8ValidTail(out) { // do not cut a character in half
		out = out[:len(out)-1]
	}
	for len(out) < n {
		out = append(out, ' ')
	}
	return out
}

func utf8ValidTail(p []byte) bool {
	var v utf8Validator
	return v.write(p) && v.complete()
}

// The parameter combinations of Autobahn's group 13, as this side's options:
// (no context takeover, max window bits), for the client's offer, against
// servers with and without their own limits.
var deflateCombos = []struct {
	name           string
	client, server CompressionOptions
}{
	{"13.1 takeover", CompressionOptions{MaxWindowBits: 15}, CompressionOptions{MaxWindowBits: 15}},
	{"13.2 no takeover", CompressionOptions{NoContextTakeover: true, MaxWindowBits: 15}, CompressionOptions{MaxWindowBits: 15}},
	{"13.3 window 8", CompressionOptions{MaxWindowBits: 8}, CompressionOptions{MaxWindowBits: 15}},
	{"13.4 window 15", CompressionOptions{MaxWindowBits: 15}, CompressionOptions{}},
	{"13.5 no takeover window 8", CompressionOptions{NoContextTakeover: true, MaxWindowBits: 8}, CompressionOptions{MaxWindowBits: 15}},
	{"13.6 no takeover window 15", CompressionOptions{NoContextTakeover: true, MaxWindowBits: 15}, CompressionOptions{MaxWindowBits: 9}},
	{"defaults", CompressionOptions{}, CompressionOptions{}},
	{"server no takeover", CompressionOptions{}, CompressionOptions{NoContextTakeover: true}},
	{"level 9 binary", CompressionOptions{Level: 9, Binary: true}, CompressionOptions{Level: 9, Binary: true}},
}

var deflateSizes = []int{16, 64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

// TestDeflateRoundTrip runs every combination and size through our client
// and our server, whole and fragmented, and checks that both directions were
// compressed.
func TestDeflateRoundTrip(t *testing.T) {
	for _, combo := range deflateCombos {
		combo.client.Threshold, combo.server.Threshold = -1, -1 // compress even 16 bytes
		t.Run(combo.name, func(t *testing.T) {
			serverSawCompressed := make(chan bool, 1000)
			url, _ := serve(t, &AcceptOptions{Options: Options{Compression: &combo.server}}, func(ctx context.Context, c *Conn) error {
				for {
					typ, r, err := c.Reader(ctx)
					if err != nil {
						return err
					}
					data, err := io.ReadAll(r)
					if err != nil {
						return err
					}
					serverSawCompressed <- c.rs.compressed
					w, err := c.Writer(ctx, typ)
					if err != nil {
						return err
					}
					w.Write(data[:len(data)/2])
					w.Write(data[len(data)/2:])
					if err := w.Close(); err != nil {
						return err
					}
				}
			})
			c := dial(t, url, &DialOptions{Options: Options{Compression: &combo.client}})
			if c.deflate == nil {
				t.Fatal("compression not negotiated")
			}
			ctx := testCtx(t)
			rng := rand.New(rand.NewPCG(1, 2))
			for round := range 2 { // the second round reuses the history
				for _, n := range deflateSizes {
					p := chatLike(rng, n)
					typ := MessageText
					if combo.client.Binary && n%2 == 0 {
						typ = MessageBinary
					}
					if err := c.Write(ctx, typ, p); err != nil {
						t.Fatal(err)
					}
					msg, err := c.Read(ctx)
					if err != nil {
						t.Fatalf("round %d size %d: %v", round, n, err)
					}
					if msg.Type != typ || !bytes.Equal(msg.Data, p) {
						t.Fatalf("round %d size %d: echo differs (%d bytes)", round, n, len(msg.Data))
					}
					if !<-serverSawCompressed || !c.rs.compressed {
						t.Fatalf("size %d was not compressed both ways", n)
					}
				}
			}
		})
	}
}

func TestDeflateThreshold(t *testing.T) {
	url, _ := serve(t, nil, func(ctx context.Context, c *Conn) error {
		for {
			msg, err := c.Read(ctx)
			if err != nil {
				return err
			}
			reply := fmt.Sprintf("%d:%v", len(msg.Data), c.rs.compressed)
			if err := c.Write(ctx, MessageText, []byte(reply)); err != nil {
				return err
			}
		}
	})
	c := dial(t, url, nil)
	ctx := testCtx(t)
	for _, tc := range []struct {
		n    int
		want string
	}{{10, "10:false"}, {63, "63:false"}, {64, "64:true"}, {1000, "1000:true"}} {
		c.Write(ctx, MessageText, bytes.Repeat([]byte("a"), tc.n))
		msg, err := c.Read(ctx)
		if err != nil || string(msg.Data) != tc.want {
			t.Fatalf("%d bytes: server saw %q %v, want %q", tc.n, msg.Data, err, tc.want)
		}
	}
	// Binary is not compressed by default.
	c.Write(ctx, MessageBinary, make([]byte, 1000))
	if msg, _ := c.Read(ctx); string(msg.Data) != "1000:false" {
		t.Fatalf("binary: server saw %q", msg.Data)
	}
}

// rawDeflateClient is a client written with the standard library's flate,
// an implementation independent of ours: it compresses with one writer kept
// across messages (full context takeover) and inflates each reply with the
// previous replies as dictionary.
type rawDeflateClient struct {
	conn    net.Conn
	br      *bufio.Reader
	fw      *stdflate.Writer
	out     bytes.Buffer
	hist    []byte
	takeRcv bool
}

func dialRawDeflate(t *testing.T, url, offer string) (*rawDeflateClient, http.Header) {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: %s\r\n\r\n", host, offer)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	rc := &rawDeflateClient{conn: conn, br: br}
	rc.fw, _ = stdflate.NewWriter(&rc.out, 6)
	return rc, resp.Header
}

// send writes one compressed (RSV1) masked message in frames of chunk bytes.
func (rc *rawDeflateClient) send(op byte, p []byte, chunk int) {
	rc.out.Reset()
	rc.fw.Write(p)
	rc.fw.Flush()
	payload := bytes.TrimSuffix(rc.out.Bytes(), deflateTail)
	first := true
	for {
		n := min(chunk, len(payload))
		b0 := byte(0)
		if first {
			b0 = op | bitRSV1
		}
		if n == len(payload) {
			b0 |= bitFIN
		}
		frame := appendFrameHeader(nil, frameHeader{fin: b0&bitFIN != 0, rsv: b0 & bitRSV1, opcode: opcode(b0 & 0x0F), masked: true, key: 0x11223344, length: int64(n)})
		body := bytes.Clone(payload[:n])
		maskBytes(0x11223344, body)
		rc.conn.Write(append(frame, body...))
		payload = payload[n:]
		first = false
		if len(payload) == 0 && b0&bitFIN != 0 {
			return
		}
		// A ping between the fragments, as the RFC allows.
		rc.conn.Write(appendFrameHeader(nil, frameHeader{fin: true, opcode: opPing, masked: true}))
	}
}

// recv reads one message, skipping pongs, and inflates it if RSV1 is set.
func (rc *rawDeflateClient) recv(t *testing.T) (opcode, []byte, bool) {
	t.Helper()
	var payload []byte
	var op opcode
	compressed := false
	for {
		var hdr [10]byte
		if _, err := io.ReadFull(rc.br, hdr[:2]); err != nil {
			t.Fatal(err)
		}
		n := frameHeaderSize(hdr[1])
		io.ReadFull(rc.br, hdr[2:n])
		h, _, err := parseFrameHeader(hdr[:n])
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, h.length)
		io.ReadFull(rc.br, body)
		if h.opcode == opPong {
			continue
		}
		if h.opcode == opClose {
			t.Fatalf("server closed: %x", body)
		}
		if h.opcode != opContinuation {
			op, compressed = h.opcode, h.rsv&bitRSV1 != 0
		}
		payload = append(payload, body...)
		if h.fin {
			break
		}
	}
	if !compressed {
		return op, payload, false
	}
	var dict []byte
	if rc.takeRcv {
		dict = rc.hist
	}
	fr := stdflate.NewReaderDict(io.MultiReader(bytes.NewReader(payload), bytes.NewReader(inflateTail)), dict)
	data, err := io.ReadAll(fr)
	if err != nil {
		t.Fatalf("std flate cannot inflate our message: %v", err)
	}
	rc.hist = append(rc.hist, data...)
	return op, data, true
}

func TestDeflateAgainstStandardFlate(t *testing.T) {
	url, _ := serve(t, &AcceptOptions{Options: Options{Compression: &CompressionOptions{MaxWindowBits: 15, Threshold: -1}}}, func(ctx context.Context, c *Conn) error {
		for {
			msg, err := c.Read(ctx)
			if err != nil {
				return err
			}
			if err := c.Write(ctx, msg.Type, msg.Data); err != nil {
				return err
			}
		}
	})
	rc, h := dialRawDeflate(t, url, "permessage-deflate")
	if got := h.Get("Sec-WebSocket-Extensions"); got != "permessage-deflate" {
		t.Fatalf("server answered %q", got)
	}
	rc.takeRcv = true
	rng := rand.New(rand.NewPCG(3, 4))
	for i, n := range append(deflateSizes, deflateSizes...) {
		p := chatLike(rng, n)
		rc.send(byte(opText), p, 1+n/3)
		op, data, compressed := rc.recv(t)
		if op != opText || !bytes.Equal(data, p) || !compressed {
			t.Fatalf("message %d (%d bytes): op %v compressed %v, %d bytes back", i, n, op, compressed, len(data))
		}
	}
}

func TestDeflateUncompressedMessageOnCompressedConnection(t *testing.T) {
	url := echoServer(t, &AcceptOptions{Options: Options{Compression: &CompressionOptions{MaxWindowBits: 15}}})
	rc, _ := dialRawDeflate(t, url, "permessage-deflate")
	frame := appendFrameHeader(nil, frameHeader{fin: true, opcode: opText, masked: true, length: 5})
	rc.conn.Write(append(frame, "plain"...)) // zero key: payload as is
	if _, data, _ := rc.recv(t); string(data) != "plain" {
		t.Fatalf("echo %q", data)
	}
}

// expectCloseFrame reads frames until a close frame and returns its code.
func expectCloseFrame(t *testing.T, rc *rawDeflateClient) StatusCode {
	t.Helper()
	for {
		var hdr [14]byte
		if _, err := io.ReadFull(rc.br, hdr[:2]); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		n := frameHeaderSize(hdr[1])
		io.ReadFull(rc.br, hdr[2:n])
		h, _, _ := parseFrameHeader(hdr[:n])
		body := make([]byte, h.length)
		io.ReadFull(rc.br, body)
		if h.opcode == opClose {
			return StatusCode(binary.BigEndian.Uint16(body))
		}
	}
}

func TestDeflateRSV1OnContinuationFails(t *testing.T) {
	url := echoServer(t, nil)
	rc, _ := dialRawDeflate(t, url, "permessage-deflate; client_max_window_bits")
	rc.conn.Write(appendFrameHeader(nil, frameHeader{fin: false, opcode: opText, masked: true, length: 0}))
	rc.conn.Write(appendFrameHeader(nil, frameHeader{fin: true, rsv: bitRSV1, opcode: opContinuation, masked: true, length: 0}))
	if code := expectCloseFrame(t, rc); code != StatusProtocolError {
		t.Fatalf("close %d, want 1002", code)
	}
}

func TestDeflateCorruptDataFails(t *testing.T) {
	url := echoServer(t, nil)
	rc, _ := dialRawDeflate(t, url, "permessage-deflate; client_max_window_bits")
	frame := appendFrameHeader(nil, frameHeader{fin: true, rsv: bitRSV1, opcode: opBinary, masked: true, length: 4})
	rc.conn.Write(append(frame, 0xff, 0xff, 0xff, 0xff)) // reserved block type 3
	if code := expectCloseFrame(t, rc); code != StatusInvalidFramePayloadData {
		t.Fatalf("close %d, want 1007", code)
	}
}

// TestDeflateBomb sends 1 GiB of zeros compressed into about a megabyte to a
// server with a 1 MiB read limit: it must answer 1009 after inflating little
// more than the limit, with its heap staying small.
func TestDeflateBomb(t *testing.T) {
	url, result := serve(t, &AcceptOptions{Options: Options{ReadLimit: 1 << 20}}, func(ctx context.Context, c *Conn) error {
		_, err := c.Read(ctx)
		return err
	})
	rc, _ := dialRawDeflate(t, url, "permessage-deflate; client_max_window_bits")
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Stream the bomb: a compressed message of 1 GiB of zeros, in frames.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rc.conn.Write(appendFrameHeader(nil, frameHeader{fin: false, rsv: bitRSV1, opcode: opBinary, masked: true, length: 0}))
		zeros := make([]byte, 1<<20)
		for range 1024 {
			rc.out.Reset()
			rc.fw.Write(zeros)
			rc.fw.Flush()
			frame := appendFrameHeader(nil, frameHeader{fin: false, opcode: opContinuation, masked: true, length: int64(rc.out.Len())})
			if _, err := rc.conn.Write(append(frame, rc.out.Bytes()...)); err != nil {
				return // the server closed the connection: expected
			}
		}
	}()
	code := expectCloseFrame(t, rc)
	rc.conn.Close()
	wg.Wait()
	if code != StatusMessageTooBig {
		t.Fatalf("close %d, want 1009", code)
	}
	var ce *CloseError
	if err := <-result; !errors.As(err, &ce) || ce.Code != StatusMessageTooBig {
		t.Fatalf("server's Read: %v", err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.TotalAlloc - before.TotalAlloc); grew > 64<<20 {
		t.Fatalf("allocated %d MiB while refusing the bomb", grew>>20)
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(5, 6)) }

// TestAppendHistory checks the sliding window against a plain slice: the
// last size bytes are kept, the slice never holds more than size, and a
// history of a few small messages stays small (an idle connection with
// context takeover keeps it).
func TestAppendHistory(t *testing.T) {
	const size = 1 << 13
	rng := newTestRand()
	var hist, ref []byte
	for i := range 500 {
		p := chatLike(rng, rng.IntN(3*size/2)+1)
		if i < 3 {
			p = p[:200]
		}
		hist = appendHistory(hist, p, size)
		ref = append(ref, p...)
		ref = ref[max(0, len(ref)-size):]
		if !bytes.Equal(hist, ref) {
			t.Fatalf("after %d messages the history differs from the last %d bytes sent", i+1, size)
		}
		if cap(hist) > size {
			t.Fatalf("after %d messages the history holds %d bytes, more than the window's %d", i+1, cap(hist), size)
		}
		if i == 2 && cap(hist) > 1024 {
			t.Fatalf("3 messages of 200 bytes take a history of %d bytes", cap(hist))
		}
	}
}
