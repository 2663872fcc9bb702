package websocket

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// FuzzClientReadFrames feeds arbitrary bytes, as a server would send them,
// to a client connection, where the masking rule is reversed: a masked
// frame from the server is a protocol error, and everything the client
// writes back (pongs, its close) must be masked. flags bit 0 negotiates
// permessage-deflate, bit 1 without context takeover.
func FuzzClientReadFrames(f *testing.F) {
	text := unmaskedTestFrame(bitFIN|byte(opText), []byte("hi"))
	seeds := [][]byte{
		append(text, unmaskedTestFrame(bitFIN|byte(opClose), []byte{0x03, 0xe8})...),
		append(unmaskedTestFrame(bitFIN|byte(opPing), []byte("ping")), text...), // answered with a masked pong
		append(unmaskedTestFrame(byte(opText), []byte{0xce}), unmaskedTestFrame(bitFIN|byte(opContinuation), []byte{0xba})...),
		{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2},                                                         // masked by the server: 1002
		unmaskedTestFrame(bitFIN|byte(opBinary)|bitRSV1, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), // "Hello", compressed
		{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0},                                                            // a 64-bit length with the top bit set: 1002
		unmaskedTestFrame(bitFIN|byte(opClose), []byte{0x03, 0xed}),                                        // 1005 on the wire: 1002
	}
	for _, in := range seeds {
		for _, flags := range []uint8{0, 1, 3} {
			f.Add(in, flags)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, flags uint8) {
		cfg := connConfig{t: &scriptedTransport{in: in}, client: true, opts: &Options{ReadLimit: fuzzReadLimit}}
		if flags&1 != 0 {
			noTakeover := flags&2 != 0
			co := &CompressionOptions{NoContextTakeover: noTakeover}
			cfg.opts.Compression = co
			cfg.deflate = newDeflater(deflateParams{sendNoTakeover: noTakeover, recvNoTakeover: noTakeover, sendWindowBits: 15, recvWindowBits: 15}, co)
		}
		readUntilClose(t, cfg)
	})
}

// unmaskedTestFrame is one server-to-client frame with its payload.
func unmaskedTestFrame(b0 byte, payload []byte) []byte {
	h := frameHeader{fin: b0&bitFIN != 0, rsv: b0 & 0x70, opcode: opcode(b0 & 0x0f), length: int64(len(payload))}
	return append(appendFrameHeader(nil, h), payload...)
}

// FuzzDialResponse feeds arbitrary handshake responses to the client's
// checks (RFC 6455 §4.1, RFC 7692 §5.1): a response is accepted only when
// every check holds, and otherwise refused with a message, never a panic.
// accept "=" stands for the right Sec-WebSocket-Accept, which the fuzzer
// could not find; offer chooses what the client offered: bit 0 no
// compression, bit 1 NoContextTakeover, bit 2 a 15-bit window (otherwise
// the default 13), bit 3 the subprotocols "chat" and "v2".
func FuzzDialResponse(f *testing.F) {
	f.Add(101, "websocket", "Upgrade", "=", "", "", uint8(0))
	f.Add(101, "WebSocket", "keep-alive, upgrade", "=", "permessage-deflate", "chat", uint8(8))
	f.Add(101, "websocket", "Upgrade", "=", "permessage-deflate; client_max_window_bits=13; server_max_window_bits=13", "", uint8(0))
	f.Add(101, "websocket", "Upgrade", "=", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", "", uint8(2))
	f.Add(101, "websocket", "Upgrade", "=", "permessage-deflate; client_max_window_bits", "", uint8(4))
	f.Add(101, "websocket", "Upgrade", "=", `permessage-deflate; server_max_window_bits="10", x-webkit-deflate-frame`, "", uint8(0))
	f.Add(101, "websocket", "Upgrade", "=", "permessage-deflate", "", uint8(1))
	f.Add(101, "websocket", "Upgrade", "=", "", "chat, v2", uint8(8))
	f.Add(101, "websocket", "Upgrade", "s3pPLMBiTxaQ9kYGzzhZRbK+xOp=", "", "", uint8(0)) // one character off
	f.Add(200, "websocket", "Upgrade", "=", "", "", uint8(0))
	f.Add(101, "h2c", "Upgrade", "=", "", "", uint8(0))
	f.Fuzz(func(t *testing.T, status int, upgrade, connection, accept, extensions, protocol string, offer uint8) {
		const key = "dGhlIHNhbXBsZSBub25jZQ=="
		if accept == "=" {
			accept = acceptKey(key)
		}
		h := http.Header{}
		for name, v := range map[string]string{"Upgrade": upgrade, "Connection": connection, "Sec-WebSocket-Accept": accept,
			"Sec-WebSocket-Extensions": extensions, "Sec-WebSocket-Protocol": protocol} {
			if v != "" {
				h.Set(name, v)
			}
		}
		co := &CompressionOptions{Disabled: offer&1 != 0, NoContextTakeover: offer&2 != 0}
		if offer&4 != 0 {
			co.MaxWindowBits = 15
		}
		opts := &DialOptions{Options: Options{Compression: co}}
		if offer&8 != 0 {
			opts.Subprotocols = []string{"chat", "v2"}
		}
		resp := &http.Response{StatusCode: status, Status: strconv.Itoa(status), Header: h}
		subprotocol, deflate, herr := checkAcceptResponse(resp, key, opts)
		if herr != nil {
			if herr.Message == "" || herr.Status != status {
				t.Fatalf("refusal %+v", herr)
			}
			return
		}
		if status != http.StatusSwitchingProtocols || !listHas(upgrade, "websocket") || !listHas(connection, "upgrade") || accept != acceptKey(key) {
			t.Fatalf("accepted status %d, Upgrade %q, Connection %q, Accept %q", status, upgrade, connection, accept)
		}
		if subprotocol == "" && strings.TrimFunc(protocol, func(r rune) bool { return unicode.IsSpace(r) || r == ',' }) != "" || subprotocol != "" && (offer&8 == 0 || !listHas(protocol, subprotocol)) {
			t.Fatalf("accepted subprotocol %q (chosen %q, offered %v)", subprotocol, protocol, opts.Subprotocols)
		}
		if (deflate != nil) != (extensions != "") {
			t.Fatalf("extensions %q gave compression %v", extensions, deflate != nil)
		}
		if deflate == nil {
			return
		}
		p := deflate.params
		switch {
		case co.Disabled:
			t.Fatalf("compression accepted (%q) though not offered", extensions)
		case !strings.HasPrefix(strings.TrimLeft(extensions, " \t"), "permessage-deflate"):
			t.Fatalf("compression from %q", extensions)
		case co.NoContextTakeover && !(p.sendNoTakeover && p.recvNoTakeover):
			t.Fatalf("offered no context takeover, negotiated %+v from %q", p, extensions)
		case p.sendWindowBits < 8 || p.sendWindowBits > 15 || p.recvWindowBits < 8 || p.recvWindowBits > 15:
			t.Fatalf("window bits %+v from %q", p, extensions)
		case p.recvWindowBits < 15 && !strings.Contains(extensions, "server_max_window_bits"),
			p.sendWindowBits < 15 && !strings.Contains(extensions, "client_max_window_bits"):
			t.Fatalf("windows %+v not asked for in %q", p, extensions)
		}
	})
}

// listHas is the test's own reading of a comma-separated header: does it
// hold token, case-insensitively.
func listHas(v, token string) bool {
	for _, t := range strings.Split(v, ",") {
		if strings.EqualFold(strings.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}
