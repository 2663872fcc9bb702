package websocket_test

// Autobahn groups 1 (framing), 2 (pings/pongs), 3 (reserved bits) and 4 (opcodes), run against
// our server and our client (see conformance_peer_test.go), plus length-encoding, masking and
// handshake-boundary cases of our own ("1.len.*", "1.mask.*", "1.hs.*").

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

const rfcRSV = "RFC 6455 5.2: RSV1-3 MUST be 0 unless an extension defining them was negotiated"

func TestAutobahnFraming(t *testing.T) {
	var cases []conformanceCase

	// 1.1.x text and 1.2.x binary messages of lengths around the 7/16/64-bit length boundaries;
	// x.8 sends the 65536-byte frame in chops of 997 octets. Every echo must come back exact and,
	// checked by readFrame, with the minimal length encoding.
	lengths := []int{0, 125, 126, 127, 128, 65535, 65536, 65536}
	for i, n := range lengths {
		chop := 0
		if i == 7 {
			chop = 997
		}
		for _, m := range []struct {
			group string
			op    byte
			fill  string
		}{{"1.1", opText, "*"}, {"1.2", opBinary, "\xfe"}} {
			payload := repeat(m.fill, max(n, 1))[:n]
			cases = append(cases, conformanceCase{
				id: fmt.Sprintf("%s.%d", m.group, i+1),
				run: func(p *peer) {
					f := p.frame(m.op, true, payload)
					if chop > 0 {
						p.sendChopped(chop, f)
					} else {
						p.send(f)
					}
					p.expectMessage(m.op, payload)
					p.closeNormally()
				},
			})
		}
	}

	// Length encoding: RFC 6455 5.2 "the minimal number of bytes MUST be used to encode the length",
	// and the 64-bit length's most significant bit MUST be 0.
	const rfcMinLen = "RFC 6455 5.2: the minimal number of bytes MUST be used to encode the payload length"
	for _, c := range []struct {
		id       string
		n        int
		lenBytes int
	}{
		{"1.len.1", 5, 2},     // "Hello" with a 16-bit length
		{"1.len.2", 125, 2},   // 125 fits the 7-bit form
		{"1.len.3", 126, 8},   // 126 fits the 16-bit form
		{"1.len.4", 65535, 8}, // 65535 fits the 16-bit form
		{"1.len.5", 0, 2},     // empty payload, 16-bit length 0
		{"1.len.6", 0, 8},     // empty payload, 64-bit length 0
	} {
		cases = append(cases, conformanceCase{id: c.id, run: func(p *peer) {
			p.send(p.frame(opText, true, repeat("*", max(c.n, 1))[:c.n], withLenBytes(c.lenBytes)))
			p.expectFail(websocket.StatusProtocolError, rfcMinLen)
		}})
	}
	cases = append(cases, conformanceCase{id: "1.len.7", run: func(p *peer) {
		// 64-bit length with the most significant bit set: a malformed header, whatever the limit.
		p.send(p.frame(opBinary, true, []byte("Hello"), withDeclaredLen(1<<63|5)))
		p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.2: the most significant bit of the 64-bit length MUST be 0")
	}})

	// Masking (RFC 6455 5.1, 5.3).
	cases = append(cases,
		conformanceCase{id: "1.mask.1", only: serverSide, run: func(p *peer) {
			p.send(p.frame(opText, true, []byte("Hello, world!"), forceUnmasked()))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.1: a server MUST close the connection upon receiving an unmasked frame (1002)")
		}},
		conformanceCase{id: "1.mask.2", only: serverSide, run: func(p *peer) {
			p.send(p.frame(opPing, true, []byte("unmasked ping"), forceUnmasked()))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.1: every client frame, control frames included, MUST be masked")
		}},
		conformanceCase{id: "1.mask.3", only: serverSide, run: func(p *peer) {
			// A zero masking key is a legal (if poor) key: the frame is masked.
			p.send(p.frame(opText, true, []byte("zero key"), withKey([4]byte{})))
			p.expectText("zero key")
			p.closeNormally()
		}},
		conformanceCase{id: "1.mask.4", only: serverSide, run: func(p *peer) {
			// Fragments with different keys, one of them unmasked: the unmasked one fails the connection.
			p.send(p.text("frag1", false), p.frame(opCont, true, []byte("frag2"), forceUnmasked()))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.1: a server MUST close the connection upon receiving an unmasked frame")
		}},
		conformanceCase{id: "1.mask.5", only: clientSide, run: func(p *peer) {
			p.send(p.frame(opText, true, []byte("Hello, world!"), forceMasked()))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.1: a client MUST close the connection if it detects a masked frame (1002)")
		}},
		conformanceCase{id: "1.mask.6", only: clientSide, run: func(p *peer) {
			p.send(p.frame(opPing, true, []byte("masked ping"), forceMasked()))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.1: a server MUST NOT mask any frames; the client fails on a masked one")
		}},
		conformanceCase{id: "1.mask.7", only: clientSide, run: func(p *peer) {
			p.send(p.frame(opClose, true, closePayload(1000, ""), forceMasked()))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.1: a server MUST NOT mask any frames; the client fails on a masked one")
		}},
		conformanceCase{id: "1.mask.8", run: func(p *peer) {
			// Our side's frames: masked from the client with a fresh key per frame, unmasked from the
			// server (readFrame checks each frame; here we also check the keys differ).
			var fs [][]byte
			for i := range 8 {
				fs = append(fs, p.text(fmt.Sprintf("message %d", i), true))
			}
			p.send(fs...)
			for i := range 8 {
				p.expectText(fmt.Sprintf("message %d", i))
			}
			if p.side == clientSide {
				seen := map[[4]byte]bool{}
				for _, k := range p.maskKeys {
					seen[k] = true
				}
				if len(seen) < len(p.maskKeys) {
					p.t.Errorf("our client reused masking keys: %d distinct in %d frames (RFC 6455 5.3: a fresh key for each frame)",
						len(seen), len(p.maskKeys))
				}
			}
			p.closeNormally()
		}},
	)

	// Handshake boundary: frames that arrive in the same TCP segment as the 101 response must not be lost.
	cases = append(cases, conformanceCase{
		id:   "1.hs.1",
		only: clientSide,
		cfg: func(c *endpointConfig) {
			c.with101 = bytes.Join([][]byte{
				unmaskedFrame(opText, true, []byte("right after the 101")),
				unmaskedFrame(opBinary, true, []byte{0, 1, 2, 3}),
			}, nil)
		},
		run: func(p *peer) {
			p.expectText("right after the 101")
			p.expectMessage(opBinary, []byte{0, 1, 2, 3})
			p.closeNormally()
		},
	})

	runCases(t, cases)
}

// unmaskedFrame builds a server-to-client frame without a peer (for bytes sent with the 101).
func unmaskedFrame(op byte, fin bool, payload []byte) []byte {
	p := &peer{side: clientSide}
	return p.frame(op, fin, payload)
}

func TestAutobahnPingPong(t *testing.T) {
	helloBin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	fe125 := bytes.Repeat([]byte{0xfe}, 125)
	pingCase := func(id string, payload []byte, chop int) conformanceCase {
		return conformanceCase{id: id, run: func(p *peer) {
			if chop > 0 {
				p.sendChopped(chop, p.ping(payload))
			} else {
				p.send(p.ping(payload))
			}
			p.expectPong(payload)
			p.closeNormally()
		}}
	}
	cases := []conformanceCase{
		pingCase("2.1", nil, 0),
		pingCase("2.2", []byte("Hello, world!"), 0),
		pingCase("2.3", helloBin, 0),
		pingCase("2.4", fe125, 0),
		{id: "2.5", run: func(p *peer) {
			p.send(p.ping(bytes.Repeat([]byte{0xfe}, 126)))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.5: all control frames MUST have a payload length of 125 bytes or less")
		}},
		pingCase("2.6", fe125, 1),
		{id: "2.7", run: func(p *peer) {
			// An unsolicited pong is ignored: the next thing our side sends is the probe's echo.
			p.send(p.pong(nil), p.text("probe", true))
			p.expectText("probe")
			p.closeNormally()
		}},
		{id: "2.8", run: func(p *peer) {
			p.send(p.pong([]byte("unsolicited pong payload")), p.text("probe", true))
			p.expectText("probe")
			p.closeNormally()
		}},
		{id: "2.9", run: func(p *peer) {
			p.send(p.pong([]byte("unsolicited pong payload")), p.ping([]byte("ping payload")))
			p.expectPong([]byte("ping payload"))
			p.closeNormally()
		}},
		{id: "2.10", run: func(p *peer) {
			var fs [][]byte
			for i := range 10 {
				fs = append(fs, p.ping(fmt.Appendf(nil, "payload-%d", i)))
			}
			p.send(fs...)
			for i := range 10 {
				p.expectPong(fmt.Appendf(nil, "payload-%d", i))
			}
			p.closeNormally()
		}},
		{id: "2.11", run: func(p *peer) {
			var fs [][]byte
			for i := range 10 {
				fs = append(fs, p.ping(fmt.Appendf(nil, "payload-%d", i)))
			}
			p.sendChopped(1, fs...)
			for i := range 10 {
				p.expectPong(fmt.Appendf(nil, "payload-%d", i))
			}
			p.closeNormally()
		}},
		// Our own: a pong larger than 125 bytes is a malformed control frame too.
		{id: "2.x.1", run: func(p *peer) {
			p.send(p.pong(bytes.Repeat([]byte{0xfe}, 126)))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.5: control frames MUST have a payload length of 125 bytes or less")
		}},
		// Our own: a ping whose 7-bit length is fine but sent with the 16-bit form.
		{id: "2.x.2", run: func(p *peer) {
			p.send(p.frame(opPing, true, []byte("ping"), withLenBytes(2)))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.2 (minimal length encoding) and 5.5 (control payload <= 125)")
		}},
		// Our own: pings and messages interleaved are answered in order.
		{id: "2.x.3", run: func(p *peer) {
			p.send(p.ping([]byte("a")), p.text("one", true), p.ping([]byte("b")), p.binary([]byte("two"), true))
			p.expectPong([]byte("a"))
			p.expectText("one")
			p.expectPong([]byte("b"))
			p.expectMessage(opBinary, []byte("two"))
			p.closeNormally()
		}},
	}
	runCases(t, cases)
}

func TestAutobahnReservedBits(t *testing.T) {
	hello := []byte("Hello, world!")
	helloBin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	// 3.2-3.4: a good message, then one with RSV set, then a ping: echo of the first only, no pong.
	goodBadPing := func(id string, rsv byte, how string) conformanceCase {
		return conformanceCase{id: id, run: func(p *peer) {
			fs := [][]byte{p.text(string(hello), true), p.frame(opText, true, hello, withRSV(rsv)), p.ping(nil)}
			switch how {
			case "chop":
				p.send(fs...)
			case "frame":
				p.sendEach(fs...)
			case "octet":
				p.sendChopped(1, fs...)
			}
			p.expectText(string(hello))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}}
	}
	cases := []conformanceCase{
		{id: "3.1", run: func(p *peer) {
			p.send(p.frame(opText, true, hello, withRSV(rsv3)))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}},
		goodBadPing("3.2", rsv2, "chop"),
		goodBadPing("3.3", rsv2|rsv3, "frame"),
		goodBadPing("3.4", rsv1, "octet"),
		{id: "3.5", run: func(p *peer) {
			p.send(p.frame(opBinary, true, helloBin, withRSV(rsv1|rsv3)))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}},
		{id: "3.6", run: func(p *peer) {
			p.send(p.frame(opPing, true, hello, withRSV(rsv1|rsv2)))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}},
		{id: "3.7", run: func(p *peer) {
			p.send(p.frame(opClose, true, nil, withRSV(rsv1|rsv2|rsv3)))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}},
		// Our own: RSV1 on a continuation frame (RSV1 means "compressed" only on a first frame, and
		// only with permessage-deflate negotiated, which it is not here).
		{id: "3.x.1", run: func(p *peer) {
			p.send(p.text("frag1", false), p.frame(opCont, true, []byte("frag2"), withRSV(rsv1)))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}},
		// Our own: RSV on a pong.
		{id: "3.x.2", run: func(p *peer) {
			p.send(p.frame(opPong, true, nil, withRSV(rsv2)))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}},
	}
	runCases(t, cases)
}

func TestAutobahnOpcodes(t *testing.T) {
	const rfcOp = "RFC 6455 5.2: on an unknown opcode the receiving endpoint MUST _Fail the WebSocket Connection_"
	hello := []byte("Hello, world!")
	var cases []conformanceCase
	for _, g := range []struct {
		group string
		ops   []byte
	}{{"4.1", []byte{3, 4, 5, 6, 7}}, {"4.2", []byte{11, 12, 13, 14, 15}}} {
		for i, op := range g.ops {
			id := fmt.Sprintf("%s.%d", g.group, i+1)
			switch i {
			case 0: // reserved opcode, no payload
				cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
					p.send(p.frame(op, true, nil))
					p.expectFail(websocket.StatusProtocolError, rfcOp)
				}})
			case 1: // reserved opcode with payload
				cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
					p.send(p.frame(op, true, []byte("reserved opcode payload")))
					p.expectFail(websocket.StatusProtocolError, rfcOp)
				}})
			default: // text, reserved opcode (x.3 empty, x.4/x.5 with payload), ping: echo, fail, no pong
				var payload []byte
				if i > 2 {
					payload = hello
				}
				cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
					p.send(p.text(string(hello), true), p.frame(op, true, payload), p.ping(nil))
					p.expectText(string(hello))
					p.expectFail(websocket.StatusProtocolError, rfcOp)
				}})
			}
		}
	}
	// Our own: a reserved opcode as a "fragment" inside a fragmented message.
	cases = append(cases, conformanceCase{id: "4.x.1", run: func(p *peer) {
		p.send(p.text("frag1", false), p.frame(3, true, []byte("frag2")))
		p.expectFail(websocket.StatusProtocolError, rfcOp)
	}})
	runCases(t, cases)
}
