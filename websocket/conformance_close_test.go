package websocket_test

// Autobahn group 7: close handling and close codes (RFC 6455 sections 5.5.1, 7.1, 7.4), against
// our server and our client; plus "7.tcp.*": the Conn itself closes the TCP connection after the
// closing handshake or a failure, while the application still holds it.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

const rfcCloseCode = "RFC 6455 7.4.1/7.4.2: close codes 0-999, 1004-1006, 1015, 1016-2999 and >= 5000 are not valid on the wire; receiving one is a protocol error"

// expectCloseEcho requires our side to answer the peer's close frame with a close frame carrying
// wantCode (0: an empty payload or 1000 are both accepted), then close the TCP connection.
func (p *peer) expectCloseEcho(wantCode uint16) {
	p.t.Helper()
	code, reason := p.expectCloseFrame("answer to the peer's close frame (RFC 6455 5.5.1)")
	switch {
	case wantCode == 0 && (code == 0 || code == 1000):
	case code == wantCode:
	default:
		want := fmt.Sprint(wantCode)
		if wantCode == 0 {
			want = "an empty close payload or 1000"
		}
		p.t.Fatalf("our %s answered the peer's close with code %d (reason %q); want %s echoed", p.side, code, reason, want)
	}
	p.expectTCPClosed()
}

func TestAutobahnClose(t *testing.T) {
	const helloWorld = "Hello World!"
	cases := []conformanceCase{
		{id: "7.1.1", run: func(p *peer) {
			p.send(p.text(helloWorld, true), p.closeFrame(1000, ""))
			p.expectText(helloWorld)
			p.expectCloseEcho(1000)
			p.expectOurCloseErr(websocket.StatusNormalClosure, true)
		}},
		{id: "7.1.2", run: func(p *peer) {
			// Two close frames: only one answer.
			p.send(p.closeFrame(1000, ""), p.closeFrame(1000, ""))
			p.expectCloseEcho(1000)
			p.expectOurCloseErr(websocket.StatusNormalClosure, true)
		}},
		{id: "7.1.3", run: func(p *peer) {
			// A ping after the close: no pong (RFC 6455 5.5.2: unless it already received a Close frame).
			p.send(p.closeFrame(1000, ""), p.ping(nil))
			p.expectCloseEcho(1000)
			p.expectOurCloseErr(websocket.StatusNormalClosure, true)
		}},
		{id: "7.1.4", run: func(p *peer) {
			// A text message after the close is ignored (RFC 6455 5.5.1: no data frames after close).
			p.send(p.closeFrame(1000, ""), p.text(helloWorld, true))
			p.expectCloseEcho(1000)
			p.expectOurCloseErr(websocket.StatusNormalClosure, true)
		}},
		{id: "7.1.5", run: func(p *peer) {
			// The first fragment, the close, then the last fragment: the message is never echoed.
			p.send(p.text("fragment1", false), p.closeFrame(1000, ""), p.cont([]byte("fragment2"), true))
			p.expectCloseEcho(1000)
			p.expectOurCloseErr(websocket.StatusNormalClosure, true)
		}},
		{id: "7.1.6", run: func(p *peer) {
			// 256 KiB message, a small one, the close, a ping. Our echo loop handles messages in
			// order, so both echoes come before the close; no pong after it.
			big := repeat("BAsd7&jh23", 256<<10)
			p.send(p.text(string(big), true), p.text(helloWorld, true), p.closeFrame(1000, ""), p.ping(nil))
			p.expectMessage(opText, big)
			p.expectText(helloWorld)
			p.expectCloseEcho(1000)
			p.expectOurCloseErr(websocket.StatusNormalClosure, true)
		}},
		{id: "7.3.1", run: func(p *peer) {
			// An empty close payload: no status code (RFC 6455 7.1.5: the code is then 1005).
			p.send(p.frame(opClose, true, nil))
			p.expectCloseEcho(0)
			p.expectOurCloseErr(websocket.StatusNoStatusRcvd, true)
		}},
		{id: "7.3.2", run: func(p *peer) {
			p.send(p.frame(opClose, true, []byte("a")))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.5.1: a close body, if present, starts with a 2-byte code; 1 byte is malformed")
		}},
		{id: "7.3.3", run: func(p *peer) {
			p.send(p.closeFrame(1000, ""))
			p.expectCloseEcho(1000)
			ce := p.expectOurCloseErr(websocket.StatusNormalClosure, true)
			if ce.Reason != "" {
				p.t.Errorf("CloseError.Reason = %q; want empty", ce.Reason)
			}
		}},
		{id: "7.3.4", run: func(p *peer) {
			p.send(p.closeFrame(1000, helloWorld))
			p.expectCloseEcho(1000)
			if ce := p.expectOurCloseErr(websocket.StatusNormalClosure, true); ce.Reason != helloWorld {
				p.t.Errorf("CloseError.Reason = %q; want %q", ce.Reason, helloWorld)
			}
		}},
		{id: "7.3.5", run: func(p *peer) {
			reason := strings.Repeat("*", 123) // total payload 125: the largest allowed
			p.send(p.closeFrame(1000, reason))
			p.expectCloseEcho(1000)
			if ce := p.expectOurCloseErr(websocket.StatusNormalClosure, true); ce.Reason != reason {
				p.t.Errorf("CloseError.Reason = %q; want the 123-byte reason sent", ce.Reason)
			}
		}},
		{id: "7.3.6", run: func(p *peer) {
			p.send(p.closeFrame(1000, strings.Repeat("*", 124))) // total payload 126
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.5: control frame payload > 125 bytes")
		}},
		{id: "7.5.1", run: func(p *peer) {
			p.send(p.closeFrame(1000, kosme+"\xed\xa0\x80edited"))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.5.1/8.1: the close reason MUST be UTF-8; the brief requires 1002 (Autobahn also accepts 1007)")
		}},
	}

	// 7.7.x valid codes (Autobahn's 13, then 1012-1014 registered with IANA): echoed; our Read
	// returns the remote CloseError with that code, and errors.Is(err, io.EOF) only for 1000/1001.
	valid := []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999, 1012, 1013, 1014}
	for i, code := range valid {
		cases = append(cases, conformanceCase{id: fmt.Sprintf("7.7.%d", i+1), run: func(p *peer) {
			p.send(p.closeFrame(code, ""))
			p.expectCloseEcho(code)
			p.expectOurCloseErr(websocket.StatusCode(code), true)
		}})
	}
	// 7.9.x invalid codes (Autobahn's 9, then 1015 which MUST NOT be sent in a close frame),
	// 7.13.x codes out of range.
	invalid := []uint16{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015}
	for i, code := range invalid {
		cases = append(cases, conformanceCase{id: fmt.Sprintf("7.9.%d", i+1), run: func(p *peer) {
			p.send(p.closeFrame(code, ""))
			p.expectFail(websocket.StatusProtocolError, fmt.Sprintf("close code %d: %s", code, rfcCloseCode))
		}})
	}
	for i, code := range []uint16{5000, 65535} {
		cases = append(cases, conformanceCase{id: fmt.Sprintf("7.13.%d", i+1), run: func(p *peer) {
			p.send(p.closeFrame(code, ""))
			p.expectFail(websocket.StatusProtocolError, fmt.Sprintf("close code %d: %s", code, rfcCloseCode))
		}})
	}

	// Our own close cases.
	cases = append(cases,
		conformanceCase{id: "7.x.1", run: func(p *peer) {
			p.send(p.closeFrame(1001, kosme))
			p.expectCloseEcho(1001)
			if ce := p.expectOurCloseErr(websocket.StatusGoingAway, true); ce.Reason != kosme {
				p.t.Errorf("CloseError.Reason = %q; want %q", ce.Reason, kosme)
			}
		}},
		conformanceCase{id: "7.x.2", run: func(p *peer) {
			p.send(p.closeFrame(1000, "ends inside a code point \xce"))
			p.expectFail(websocket.StatusProtocolError, "RFC 6455 5.5.1/8.1: the close reason MUST be valid UTF-8")
		}},
		conformanceCase{id: "7.x.3", run: func(p *peer) {
			p.send(p.frame(opClose, false, closePayload(1000, "")), p.cont(nil, true))
			p.expectFail(websocket.StatusProtocolError, rfcCtlFrag)
		}},
		conformanceCase{id: "7.x.4", run: func(p *peer) {
			// A close between the fragments of a message: the fragments never make a message.
			p.send(p.binary([]byte{1, 2}, false), p.ping([]byte("before close")), p.closeFrame(4321, "bye"))
			p.expectPong([]byte("before close"))
			p.expectCloseEcho(4321)
			if ce := p.expectOurCloseErr(4321, true); ce.Reason != "bye" {
				p.t.Errorf("CloseError.Reason = %q; want %q", ce.Reason, "bye")
			}
		}},
	)

	// 7.tcp.x: the application holds the Conn after Read failed (no return from the handler, no
	// CloseNow): the Conn alone must close the TCP connection (RFC 6455 5.5.1: after sending and
	// receiving a Close, an endpoint MUST close the TCP connection; 7.1.7: after failing it).
	hold := func(c *endpointConfig) { c.hold = true }
	cases = append(cases,
		conformanceCase{id: "7.tcp.1", cfg: hold, run: func(p *peer) {
			p.send(p.text("hi", true))
			p.expectText("hi")
			p.closeNormally()
		}},
		conformanceCase{id: "7.tcp.2", cfg: hold, run: func(p *peer) {
			p.send(p.frame(opText, true, []byte("rsv"), withRSV(rsv1)))
			p.expectFail(websocket.StatusProtocolError, rfcRSV)
		}},
		conformanceCase{id: "7.tcp.3", cfg: hold, run: func(p *peer) {
			p.send(p.text("\xc0\xaf", true))
			p.expectFail(websocket.StatusInvalidFramePayloadData, rfcUTF8)
		}},
		conformanceCase{id: "7.tcp.4", cfg: hold, run: func(p *peer) {
			// The peer never answers our side's close frame and never closes: our side must close
			// the TCP connection anyway (after at most its CloseTimeout, 500 ms here).
			p.send(p.frame(opBinary, true, []byte("rsv"), withRSV(rsv2)))
			code, _ := p.expectCloseFrame("our side must fail the connection with 1002: " + rfcRSV)
			if code != 1002 {
				p.t.Fatalf("our %s closed with code %d; want 1002 (%s)", p.side, code, rfcRSV)
			}
			p.expectEOF()
			p.expectOurCloseErr(websocket.StatusProtocolError, false)
		}},
		conformanceCase{id: "7.tcp.5", cfg: hold, run: func(p *peer) {
			// The peer closes, our side answers; the peer then keeps the TCP connection open.
			// Our side must still close it (the server at once, the client at least after its CloseTimeout).
			p.send(p.closeFrame(1000, ""))
			code, _ := p.expectCloseFrame("answer to the peer's close frame (RFC 6455 5.5.1)")
			if code != 1000 {
				p.t.Fatalf("our %s answered close 1000 with %d", p.side, code)
			}
			p.expectEOF()
			p.expectOurCloseErr(websocket.StatusNormalClosure, true)
		}},
	)
	runCases(t, sortCases(cases))
}
