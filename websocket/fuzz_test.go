package websocket

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"
)

// FuzzFrameHeader checks that any bytes either parse into a header that
// encodes back to the same bytes, or are refused as a protocol error.
func FuzzFrameHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d})
	f.Add([]byte{0x82, 126, 0x01, 0x00})
	f.Add([]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Add([]byte{0x89, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 || len(b) < frameHeaderSize(b[1]) {
			return
		}
		h, n, err := parseFrameHeader(b)
		if err != nil {
			var pe *protocolError
			if !errors.As(err, &pe) || pe.code != StatusProtocolError {
				t.Fatalf("parse error %v is not a 1002 protocol error", err)
			}
			return
		}
		if n != frameHeaderSize(b[1]) || h.length < 0 {
			t.Fatalf("parsed %d bytes, length %d", n, h.length)
		}
		if enc := appendFrameHeader(nil, h); !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encoded %x, parsed from %x", enc, b[:n])
		}
	})
}

// FuzzClosePayload checks that a close payload is accepted exactly when the
// RFC allows it.
func FuzzClosePayload(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x03, 0xe8})
	f.Add([]byte{0x03, 0xe8, 'o', 'k'})
	f.Add([]byte{0x03, 0xed})
	f.Add([]byte{0x0f, 0xa0, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > maxControlPayload {
			return
		}
		ce, err := parseClosePayload(p)
		valid := len(p) == 0 || len(p) >= 2 && validWireCode(StatusCode(int(p[0])<<8|int(p[1]))) && utf8.Valid(p[2:])
		if (err == nil) != valid {
			t.Fatalf("payload %x: err %v, valid %v", p, err, valid)
		}
		if err == nil && len(p) >= 2 && (int(ce.Code) != int(p[0])<<8|int(p[1]) || ce.Reason != string(p[2:])) {
			t.Fatalf("payload %x parsed as %+v", p, ce)
		}
	})
}

// FuzzUTF8Validator checks the incremental validator against utf8.Valid for
// any input split at any point.
func FuzzUTF8Validator(f *testing.F) {
	for _, s := range utf8Samples {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, p []byte, split uint8) {
		var v utf8Validator
		got := true
		for rest, step := p, int(split)%7+1; len(rest) > 0 && got; {
			k := min(step, len(rest))
			got = v.write(rest[:k])
			rest = rest[k:]
		}
		got = got && v.complete()
		if got != utf8.Valid(p) {
			t.Fatalf("%q in steps of %d: got %v", p, int(split)%7+1, got)
		}
	})
}

// FuzzHandshakeRequest feeds arbitrary header values to the server's
// checks: a request is either accepted with a correct digest or refused
// with a 4xx status and a reason, never a panic.
func FuzzHandshakeRequest(f *testing.F) {
	f.Add("GET", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==", "")
	f.Add("GET", "keep-alive, upgrade", "WebSocket", "8", "x", "http://evil")
	f.Add("POST", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, method, connection, upgrade, version, key, origin string) {
		r := httptest.NewRequest(http.MethodGet, "http://example.com/ws", nil)
		r.Method = method
		for name, v := range map[string]string{"Connection": connection, "Upgrade": upgrade, "Sec-WebSocket-Version": version, "Sec-WebSocket-Key": key, "Origin": origin} {
			if v != "" {
				r.Header.Set(name, v)
			}
		}
		w := httptest.NewRecorder()
		herr := checkUpgradeRequest(w, r)
		if herr == nil {
			if method != http.MethodGet || !validKey(key) || version != "13" {
				t.Fatalf("accepted method %q version %q key %q", method, version, key)
			}
			if len(acceptKey(key)) != 28 {
				t.Fatal("bad accept digest length")
			}
			return
		}
		if herr.Status < 400 || herr.Status > 505 || herr.Message == "" {
			t.Fatalf("refusal %d %q", herr.Status, herr.Message)
		}
		checkOrigin(r, []string{"*.example.com", "[", "https://*"})
	})
}

// FuzzReadFrames feeds arbitrary bytes, as a client would send them, to a
// server connection: it must end with a close code of RFC 6455, never panic
// or hang.
func FuzzReadFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x82, 0, 0, 0, 0, 'h', 'i', 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8})
	f.Add([]byte{0x01, 0x81, 0, 0, 0, 0, 0xce, 0x80, 0x81, 0, 0, 0, 0, 0xba})
	f.Add([]byte{0x89, 0x80, 1, 2, 3, 4, 0x82, 0xfe, 0x00, 0x7e})
	f.Fuzz(func(t *testing.T, in []byte) {
		readUntilClose(t, connConfig{t: &scriptedTransport{in: in}, opts: &Options{ReadLimit: 1 << 16}})
	})
}

// readUntilClose reads a connection over a scriptedTransport until it ends
// and checks, for any input, that it ends with a close code of RFC 6455
// (never a panic or a hang), that no message is larger than the read limit,
// and that every frame the connection wrote is masked exactly when it is a
// client's (RFC 6455 §5.1).
func readUntilClose(t *testing.T, cfg connConfig) {
	t.Helper()
	c := newConn(cfg)
	limit := cfg.opts.ReadLimit
	var err error
	for range 1000 {
		var msg Message
		if msg, err = c.Read(t.Context()); err != nil {
			break
		}
		if int64(len(msg.Data)) > limit {
			t.Fatalf("a message of %d bytes past the read limit of %d", len(msg.Data), limit)
		}
	}
	if err == nil {
		t.Fatal("1000 messages from a short input")
	}
	var ce *CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read ended with %v, not a CloseError", err)
	}
	switch ce.Code {
	case StatusAbnormalClosure, StatusProtocolError, StatusInvalidFramePayloadData, StatusMessageTooBig:
	default:
		if !ce.Remote || !validWireCode(ce.Code) && ce.Code != StatusNoStatusRcvd {
			t.Fatalf("unexpected close %+v", ce)
		}
	}
	out := cfg.t.(*scriptedTransport).out.Bytes()
	for len(out) > 0 {
		if len(out) < 2 || len(out) < frameHeaderSize(out[1]) {
			t.Fatalf("the connection wrote a truncated frame header %x", out)
		}
		h, n, err := parseFrameHeader(out)
		if err != nil || h.masked != cfg.client || int64(len(out)-n) < h.length {
			t.Fatalf("the connection (client %v) wrote the frame %+v (%v)", cfg.client, h, err)
		}
		out = out[int64(n)+h.length:]
	}
}
