package websocket_test

// The bad-input corpus: malformed handshakes and frames, each sent as raw bytes over a real
// connection to a real server, each with the answer the RFCs require: an HTTP status for a
// handshake, a close code for a frame. It is meant to be read: one entry per line of defence,
// the bytes, the answer and the rule. Run with -v, each test prints its table.
//
// Handshakes go over TCP to an http.Server (MaxHeaderBytes 4096) whose endpoints are
// websocket.Open and websocket.Accept; frames go from the conformance suite's raw client
// (conformance_peer_test.go) to our server, over HTTP/1.1 and over an HTTP/2 stream
// (RFC 8441), with the server's connection in websocket.Open and in websocket.Accept. Where
// the conformance suite already proves an entry against Open in the same way, the entry names
// that case and runs here only with Accept, which the suite does not use.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// ---- handshakes ----

// badHandshake is a request and the answer it must get.
type badHandshake struct {
	name    string
	request string // the raw request; {path} and {host} are filled in
	status  int
	says    string            // a refusal's body must contain this
	header  map[string]string // response headers that must have these values ("" = absent)
	rule    string
	proven  string // another test that proves it too
}

// wsRequest is a valid opening handshake without its final empty line.
const wsRequest = "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

// withLines is the valid handshake with more header lines.
func withLines(lines ...string) string {
	var b strings.Builder
	b.WriteString(wsRequest)
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	return b.String() + "\r\n"
}

// replacing is the valid handshake with the line starting with name replaced by lines.
func replacing(name string, lines ...string) string {
	var kept []string
	for l := range strings.SplitSeq(strings.TrimSuffix(wsRequest, "\r\n"), "\r\n") {
		if strings.HasPrefix(l, name+":") || strings.HasPrefix(l, name+" ") {
			kept = append(kept, lines...)
			continue
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\r\n") + "\r\n\r\n"
}

const badInputMaxHeaderBytes = 4096

var badHandshakes = []badHandshake{
	// Sizes: net/http refuses a request head over the server's MaxHeaderBytes (plus its 4 KiB of slack)
	// before any handler runs.
	{name: "one header over MaxHeaderBytes", request: withLines("X-Pad: " + strings.Repeat("a", 16<<10)),
		status: 431, says: "Request Header Fields Too Large", rule: "RFC 6585 5"},
	{name: "many headers over MaxHeaderBytes", request: withLines(slicesRepeat("X-Many: 0123456789abcdef0123456789", 600)...),
		status: 431, says: "Request Header Fields Too Large", rule: "RFC 6585 5"},
	{name: "request line over MaxHeaderBytes", request: strings.Replace(withLines(), "{path}", "{path}?q="+strings.Repeat("q", 16<<10), 1),
		status: 431, says: "Request Header Fields Too Large", rule: "RFC 6585 5"},

	// HTTP syntax: net/http's answer, before any handler runs; its body says only "400 Bad Request".
	{name: "control character in a header value", request: withLines("X-Name: a\x01b"),
		status: 400, says: "Bad Request", rule: "RFC 9110 5.5: field values exclude CTLs"},
	{name: "bad UTF-8 in a header name", request: withLines("X-\xff\xfe: x"),
		status: 400, says: "Bad Request", rule: "RFC 9110 5.1: a field name is a token"},
	{name: "header line without a colon", request: withLines("X-No-Colon"),
		status: 400, says: "Bad Request", rule: "RFC 9112 5"},
	{name: "space between header name and colon", request: withLines("X-Name : x"),
		status: 400, says: "invalid header", rule: "RFC 9112 5.1: MUST be rejected with 400"},
	{name: "no Host", request: replacing("Host"),
		status: 400, says: "Host", rule: "RFC 9112 3.2: MUST respond 400 to a request without Host"},
	{name: "absurd Content-Length", request: withLines("Content-Length: 99999999999999999999999"),
		status: 400, says: "Bad Request", rule: "RFC 9110 8.6"},

	// Bytes that are not UTF-8 where the header is opaque octets: accepted.
	{name: "bad UTF-8 in an unrelated header value", request: withLines("X-Name: \xff\xfe\xfd"),
		status: 101, rule: "RFC 9110 5.5: obs-text is allowed in field values; the header is not ours to judge"},

	// The WebSocket headers (RFC 6455 4.2.1): our refusal, with a message that says what is wrong.
	{name: "bad UTF-8 in Sec-WebSocket-Key", request: replacing("Sec-WebSocket-Key", "Sec-WebSocket-Key: \xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xef\xee\xed\xec\xeb\xea\xe9\xe8"),
		status: 400, says: "Sec-WebSocket-Key", rule: "RFC 6455 4.2.1: the key is base64 of 16 bytes"},
	{name: "Sec-WebSocket-Key of 24 characters, not base64", request: replacing("Sec-WebSocket-Key", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="),
		status: 400, says: "Sec-WebSocket-Key", rule: "RFC 6455 4.2.1"},
	{name: "duplicated Sec-WebSocket-Key", request: withLines("Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA=="),
		status: 400, says: "Sec-WebSocket-Key", rule: "RFC 6455 11.3.1: the header MUST NOT appear more than once"},
	{name: "two keys in one Sec-WebSocket-Key", request: replacing("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, AQIDBAUGBwgJCgsMDQ4PEA=="),
		status: 400, says: "Sec-WebSocket-Key", rule: "RFC 6455 4.2.1"},
	{name: "no Sec-WebSocket-Key", request: replacing("Sec-WebSocket-Key"),
		status: 400, says: "Sec-WebSocket-Key", rule: "RFC 6455 4.2.1", proven: "TestAcceptRefusesBadHandshakes/no_key"},
	{name: "bad UTF-8 in Sec-WebSocket-Version", request: replacing("Sec-WebSocket-Version", "Sec-WebSocket-Version: 1\xff"),
		status: 426, says: "version 13", header: map[string]string{"Sec-WebSocket-Version": "13"}, rule: "RFC 6455 4.2.2: 426 with the versions spoken"},
	{name: "Sec-WebSocket-Version 8", request: replacing("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
		status: 426, says: "version 13", header: map[string]string{"Sec-WebSocket-Version": "13"}, rule: "RFC 6455 4.2.2", proven: "TestAcceptRefusesBadHandshakes/version_8"},
	{name: "duplicated Sec-WebSocket-Version", request: withLines("Sec-WebSocket-Version: 13"),
		status: 426, says: "version 13", header: map[string]string{"Sec-WebSocket-Version": "13"}, rule: "RFC 6455 11.3.5: the header MUST NOT appear more than once"},
	{name: "POST", request: strings.Replace(withLines(), "GET ", "POST ", 1),
		status: 405, says: "must use GET", header: map[string]string{"Allow": "GET"}, rule: "RFC 6455 4.1: the method MUST be GET", proven: "TestAcceptRefusesBadHandshakes/post"},
	{name: "HTTP/1.0", request: strings.Replace(withLines(), "HTTP/1.1", "HTTP/1.0", 1),
		status: 400, says: "HTTP/1.1", rule: "RFC 6455 4.1: HTTP/1.1 or higher"},
	{name: "Upgrade: h2c", request: replacing("Upgrade", "Upgrade: h2c"),
		status: 400, says: "Upgrade header", rule: "RFC 6455 4.2.1", proven: "TestAcceptRefusesBadHandshakes/upgrade_to_h2c"},
	{name: "Connection without Upgrade", request: replacing("Connection", "Connection: keep-alive"),
		status: 400, says: "Connection header", rule: "RFC 6455 4.2.1", proven: "TestAcceptRefusesBadHandshakes/no_connection_upgrade"},
	{name: "cross-origin request", request: withLines("Origin: https://evil.example"),
		status: 403, says: "not allowed", rule: "RFC 6455 10.2", proven: "TestAcceptRefusesBadHandshakes/cross_origin"},

	// Offers the server cannot use are declined, not refused: the connection works without them.
	{name: "bad UTF-8 in Sec-WebSocket-Protocol beside a valid offer", request: withLines("Sec-WebSocket-Protocol: chat\xff, chat"),
		status: 101, header: map[string]string{"Sec-WebSocket-Protocol": "chat"}, rule: "RFC 6455 4.2.2: the server picks one of the offers it supports"},
	{name: "bad UTF-8 as the only Sec-WebSocket-Protocol", request: withLines("Sec-WebSocket-Protocol: \xffchat"),
		status: 101, header: map[string]string{"Sec-WebSocket-Protocol": ""}, rule: "RFC 6455 4.2.2: no supported offer, no subprotocol"},
	{name: "bad UTF-8 in Sec-WebSocket-Extensions", request: withLines("Sec-WebSocket-Extensions: permessage-deflate; \xff"),
		status: 101, header: map[string]string{"Sec-WebSocket-Extensions": ""}, rule: "RFC 6455 9.1: a malformed header declines every extension"},
	{name: "client_max_window_bits=16", request: withLines("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=16"),
		status: 101, header: map[string]string{"Sec-WebSocket-Extensions": ""}, rule: "RFC 7692 7.1.2.2: 8 to 15; an invalid offer is declined (5.1)"},
	{name: "server_max_window_bits without a value", request: withLines("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits"),
		status: 101, header: map[string]string{"Sec-WebSocket-Extensions": ""}, rule: "RFC 7692 7.1.2.1: a value is required"},
	{name: "duplicated deflate parameter", request: withLines("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
		status: 101, header: map[string]string{"Sec-WebSocket-Extensions": ""}, rule: "RFC 7692 5.1: an offer with a duplicated parameter is declined"},
	{name: "empty parameter in an extension offer", request: withLines("Sec-WebSocket-Extensions: permessage-deflate;;"),
		status: 101, header: map[string]string{"Sec-WebSocket-Extensions": ""}, rule: "RFC 6455 9.1: a malformed header declines every extension"},
	{name: "an invalid offer, then a valid one", request: withLines("Sec-WebSocket-Extensions: permessage-deflate; x=1, permessage-deflate"),
		status: 101, header: map[string]string{"Sec-WebSocket-Extensions": "permessage-deflate; client_no_context_takeover"}, rule: "RFC 7692 5.1: the server accepts the first offer it can (with its default parameters)"},
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestBadInputHandshakes sends each malformed handshake to websocket.Open and to
// websocket.Accept over TCP and checks the status, the message and the headers of the answer.
func TestBadInputHandshakes(t *testing.T) {
	opts := &websocket.AcceptOptions{Subprotocols: []string{"chat"}}
	mux := http.NewServeMux()
	mux.HandleFunc("/open", func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
			_, err := c.Read(ctx)
			return err
		})
	})
	mux.HandleFunc("/accept", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Read(context.Background())
	})
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.MaxHeaderBytes = badInputMaxHeaderBytes
	ts.Start()
	defer ts.Close()
	addr := ts.Listener.Addr().String()

	for _, path := range []string{"/open", "/accept"} {
		t.Run(path[1:], func(t *testing.T) {
			for _, c := range badHandshakes {
				t.Run(c.name, func(t *testing.T) {
					req := strings.NewReplacer("{path}", path, "{host}", addr).Replace(c.request)
					resp, body := rawRoundTrip(t, addr, req)
					if resp.StatusCode != c.status {
						t.Fatalf("status %s (%q); want %d (%s)", resp.Status, body, c.status, c.rule)
					}
					if !strings.Contains(body, c.says) {
						t.Errorf("the answer says %q; want it to say %q", body, c.says)
					}
					for name, want := range c.header {
						if got := resp.Header.Get(name); got != want {
							t.Errorf("%s: %q; want %q (%s)", name, got, want, c.rule)
						}
					}
				})
			}
		})
	}
	t.Logf("%-58s %-6s %s", "handshake", "answer", "rule")
	for _, c := range badHandshakes {
		see := ""
		if c.proven != "" {
			see = " (also " + c.proven + ")"
		}
		t.Logf("%-58s %-6d %s%s", c.name, c.status, c.rule, see)
	}
}

// rawRoundTrip writes req on a new TCP connection to addr and reads the answer: the status
// line and headers, and a refusal's body.
func rawRoundTrip(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	// The server may answer and close before it has read all of an oversized request.
	go io.WriteString(conn, req)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, ""
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp, string(body)
}

// ---- frames ----

// badFrame is what the raw client sends after a valid handshake, and our server's answer.
type badFrame struct {
	name   string
	send   func(p *peer) []byte
	answer frameAnswer
	rule   string
	proven string // the conformance case that proves the answer with Open
}

// frameAnswer is what our server must do.
type frameAnswer struct {
	kind   answerKind
	code   websocket.StatusCode // fails, failsAtOnce
	echoes []echoed             // echoes
}

type answerKind int

const (
	// fails: a close frame with the code, then the connection closed; Read returned the code.
	fails answerKind = iota
	// failsAtOnce: fails, without waiting for the payload the header announced.
	failsAtOnce
	// echoes: the messages and pongs, in order; the connection stays up.
	echoes
	// isLost: the client then ends its half of the connection (TCP FIN, END_STREAM): Read
	// returns 1006 at once, no close frame is sent, the server closes its side.
	isLost
)

type echoed struct {
	op      byte
	payload string
}

func failWith(code websocket.StatusCode) frameAnswer { return frameAnswer{kind: fails, code: code} }
func failAtOnce(code websocket.StatusCode) frameAnswer {
	return frameAnswer{kind: failsAtOnce, code: code}
}
func echo(e ...echoed) frameAnswer { return frameAnswer{kind: echoes, echoes: e} }
func textBack(s string) echoed     { return echoed{opText, s} }
func pongBack(s string) echoed     { return echoed{opPong, s} }
func closeBack(code uint16) echoed { return echoed{opClose, string(closePayload(code, ""))} }
func lost() frameAnswer            { return frameAnswer{kind: isLost} }
func cut(n int, f func(p *peer) []byte) func(*peer) []byte {
	return func(p *peer) []byte { b := f(p); return b[:n] }
}

func (a frameAnswer) String() string {
	switch a.kind {
	case fails:
		return fmt.Sprintf("close %d", a.code)
	case failsAtOnce:
		return fmt.Sprintf("close %d at once", a.code)
	case isLost:
		return "1006 (no close frame)"
	}
	var parts []string
	for _, e := range a.echoes {
		if e.op == opClose {
			parts = append(parts, "close "+describeClose([]byte(e.payload)))
			continue
		}
		parts = append(parts, opName(e.op))
	}
	return "answered: " + strings.Join(parts, ", ")
}

// check runs the answer's expectations on the raw peer.
func (a frameAnswer) check(p *peer, rule string) {
	p.t.Helper()
	switch a.kind {
	case fails:
		p.expectFail(a.code, rule)
	case failsAtOnce:
		p.expectFailFast(a.code, rule)
	case isLost:
		if err := p.conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			p.t.Fatalf("end the raw client's half: %v", err)
		}
		p.expectOurCloseErr(websocket.StatusAbnormalClosure, false)
		p.expectEOF()
	case echoes:
		closed := false
		for _, e := range a.echoes {
			switch e.op {
			case opPong:
				p.expectPong([]byte(e.payload))
			case opClose:
				code, _ := p.expectCloseFrame(rule)
				if want := binary.BigEndian.Uint16([]byte(e.payload)); code != want {
					p.t.Fatalf("close %d; want %d echoed (%s)", code, want, rule)
				}
				p.expectTCPClosed()
				closed = true
			default:
				p.expectMessage(e.op, []byte(e.payload))
			}
		}
		if !closed {
			p.closeNormally()
		}
	}
}

const (
	ruleReserved  = "RFC 6455 5.2: a nonzero RSV bit or a reserved opcode without an extension that defines it MUST fail the connection"
	ruleControl   = "RFC 6455 5.5: control frames have payloads of at most 125 bytes and MUST NOT be fragmented"
	ruleFragments = "RFC 6455 5.4: a continuation needs a message to continue, and a message cannot start inside another"
	ruleCloseCode = "RFC 6455 7.4: codes below 1000, 1004-1006, 1015, 1016-2999 and above 4999 are not valid on the wire"
	ruleMinimal   = "RFC 6455 5.2: the minimal number of bytes MUST be used to encode the length; this server holds its peers to it"
	ruleTruncated = "RFC 6455 7.1.5: a connection closed without a close frame is 1006, abnormal closure"
)

var badFrames = []badFrame{
	// Lengths (RFC 6455 5.2).
	{name: "64-bit length with the MSB set", send: func(p *peer) []byte { return p.frame(opBinary, true, []byte("Hello"), withDeclaredLen(1<<63|5)) },
		answer: failWith(1002), rule: "RFC 6455 5.2: the most significant bit MUST be 0", proven: "1.len.7"},
	{name: "64-bit length 2^63-1, payload withheld", send: headerOnly(opBinary, 1<<63-1),
		answer: failAtOnce(1009), rule: "RFC 6455 7.4.1: 1009, a message too big to process, before its payload"},
	{name: "64-bit length 2^40, payload withheld", send: headerOnly(opBinary, 1<<40),
		answer: failAtOnce(1009), rule: "RFC 6455 7.4.1", proven: "9.limit.8"},
	{name: "16-bit length for 5 bytes (not minimal)", send: func(p *peer) []byte { return p.frame(opText, true, []byte("Hello"), withLenBytes(2)) },
		answer: failWith(1002), rule: ruleMinimal, proven: "1.len.1"},
	{name: "64-bit length for 200 bytes (not minimal)", send: func(p *peer) []byte { return p.frame(opText, true, repeat("x", 200), withLenBytes(8)) },
		answer: failWith(1002), rule: ruleMinimal},
	{name: "64-bit length for 0 bytes (not minimal)", send: func(p *peer) []byte { return p.frame(opText, true, nil, withLenBytes(8)) },
		answer: failWith(1002), rule: ruleMinimal, proven: "1.len.6"},

	// Control frames (RFC 6455 5.5).
	{name: "ping of 126 bytes", send: func(p *peer) []byte { return p.ping(repeat("p", 126)) },
		answer: failWith(1002), rule: ruleControl, proven: "2.5"},
	{name: "close of 126 bytes", send: func(p *peer) []byte {
		return p.frame(opClose, true, append(closePayload(1000, ""), repeat("r", 124)...))
	},
		answer: failWith(1002), rule: ruleControl},
	{name: "fragmented ping", send: func(p *peer) []byte { return p.frame(opPing, false, []byte("frag")) },
		answer: failWith(1002), rule: ruleControl, proven: "5.1"},
	{name: "fragmented close", send: func(p *peer) []byte { return p.frame(opClose, false, closePayload(1000, "")) },
		answer: failWith(1002), rule: ruleControl},
	{name: "ping and pong between the fragments of a message", send: func(p *peer) []byte {
		return join(p.text("frag1 ", false), p.ping([]byte("between")), p.pong([]byte("unasked")), p.cont([]byte("frag2"), true))
	}, answer: echo(pongBack("between"), textBack("frag1 frag2")), rule: "RFC 6455 5.4: control frames MAY be injected in the middle of a fragmented message; 5.5.3: an unasked pong is ignored"},
	{name: "close between the fragments of a message", send: func(p *peer) []byte {
		return join(p.text("never ", false), p.closeFrame(1000, ""), p.cont([]byte("finished"), true))
	}, answer: echo(closeBack(1000)), rule: "RFC 6455 5.5.1: after a close frame, nothing more is data"},

	// Fragmentation (RFC 6455 5.4).
	{name: "continuation without a message", send: func(p *peer) []byte { return p.cont([]byte("orphan"), true) },
		answer: failWith(1002), rule: ruleFragments, proven: "5.9"},
	{name: "text message inside a fragmented one", send: func(p *peer) []byte { return join(p.text("first", false), p.text("second", true)) },
		answer: failWith(1002), rule: ruleFragments, proven: "5.18"},
	{name: "binary message inside a fragmented text", send: func(p *peer) []byte { return join(p.text("first", false), p.binary([]byte("second"), false)) },
		answer: failWith(1002), rule: ruleFragments},

	// Reserved bits and opcodes (RFC 6455 5.2), masking (5.1).
	{name: "RSV1 without negotiated compression", send: func(p *peer) []byte { return p.frame(opText, true, []byte("rsv1"), withRSV(rsv1)) },
		answer: failWith(1002), rule: ruleReserved + "; RSV1 is permessage-deflate's only once negotiated (RFC 7692 6)", proven: "7.tcp.2"},
	{name: "RSV2", send: func(p *peer) []byte { return p.frame(opText, true, []byte("rsv2"), withRSV(rsv2)) },
		answer: failWith(1002), rule: ruleReserved, proven: "3.2"},
	{name: "RSV3 on a ping", send: func(p *peer) []byte { return p.frame(opPing, true, []byte("rsv3"), withRSV(rsv3)) },
		answer: failWith(1002), rule: ruleReserved},
	{name: "reserved data opcode 0x3", send: func(p *peer) []byte { return p.frame(0x3, true, nil) },
		answer: failWith(1002), rule: ruleReserved, proven: "4.1.1"},
	{name: "reserved data opcode 0x7 inside a message", send: func(p *peer) []byte { return join(p.text("a", false), p.frame(0x7, true, []byte("b"))) },
		answer: failWith(1002), rule: ruleReserved, proven: "4.x.1"},
	{name: "reserved control opcode 0xB", send: func(p *peer) []byte { return p.frame(0xB, true, nil) },
		answer: failWith(1002), rule: ruleReserved, proven: "4.2.1"},
	{name: "reserved control opcode 0xF with a payload", send: func(p *peer) []byte { return p.frame(0xF, true, []byte("payload")) },
		answer: failWith(1002), rule: ruleReserved},
	{name: "unmasked text frame", send: func(p *peer) []byte { return p.frame(opText, true, []byte("plain"), forceUnmasked()) },
		answer: failWith(1002), rule: "RFC 6455 5.1: a server MUST close the connection upon a frame that is not masked", proven: "1.mask.1"},
	{name: "unmasked close frame", send: func(p *peer) []byte { return p.frame(opClose, true, closePayload(1000, ""), forceUnmasked()) },
		answer: failWith(1002), rule: "RFC 6455 5.1"},

	// UTF-8 (RFC 6455 8.1).
	{name: "bad UTF-8 in a text message", send: func(p *peer) []byte { return p.text("\xc0\xaf", true) },
		answer: failWith(1007), rule: "RFC 6455 8.1: invalid UTF-8 in a text message fails the connection with 1007", proven: "7.tcp.3"},
	{name: "bad UTF-8 in the second fragment", send: func(p *peer) []byte { return join(p.text("good ", false), p.cont([]byte("\xed\xa0\x80"), true)) },
		answer: failWith(1007), rule: "RFC 6455 8.1 (a surrogate is not UTF-8)"},
	{name: "bad UTF-8 in a close reason", send: func(p *peer) []byte { return p.frame(opClose, true, append(closePayload(1000, ""), 0xff)) },
		answer: failWith(1002), rule: "RFC 6455 5.5.1: the reason is UTF-8; 1002 here, as the project's brief asks (Autobahn accepts 1007 too)", proven: "7.5.1"},
	{name: "bytes that are not UTF-8 in a ping", send: func(p *peer) []byte { return p.ping([]byte("\xff\xfe")) },
		answer: echo(pongBack("\xff\xfe")), rule: "RFC 6455 5.5.2: a ping's payload is application data, not text"},

	// Close frames (RFC 6455 5.5.1, 7.4).
	{name: "close with a 1-byte payload", send: func(p *peer) []byte { return p.frame(opClose, true, []byte{0x03}) },
		answer: failWith(1002), rule: "RFC 6455 5.5.1: a body starts with a 2-byte code", proven: "7.3.2"},
	{name: "close code 0", send: closeCode(0), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.1"},
	{name: "close code 999", send: closeCode(999), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.2"},
	{name: "close code 1004", send: closeCode(1004), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.3"},
	{name: "close code 1005", send: closeCode(1005), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.4"},
	{name: "close code 1006", send: closeCode(1006), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.5"},
	{name: "close code 1015", send: closeCode(1015), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.10"},
	{name: "close code 1016", send: closeCode(1016), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.6"},
	{name: "close code 2999", send: closeCode(2999), answer: failWith(1002), rule: ruleCloseCode, proven: "7.9.9"},
	{name: "close code 5000", send: closeCode(5000), answer: failWith(1002), rule: ruleCloseCode, proven: "7.13.1"},
	{name: "close code 65535", send: closeCode(65535), answer: failWith(1002), rule: ruleCloseCode, proven: "7.13.2"},
	{name: "close code 4999", send: closeCode(4999), answer: echo(closeBack(4999)), rule: "RFC 6455 7.4.2: 3000-4999 are valid; the code is echoed", proven: "7.7.13"},

	// Truncated frames: the client is gone in the middle of a frame.
	{name: "cut after the first header byte", send: cut(1, textFrame), answer: lost(), rule: ruleTruncated},
	{name: "cut in the 16-bit length", send: cut(3, func(p *peer) []byte { return p.text(string(repeat("x", 300)), true) }), answer: lost(), rule: ruleTruncated},
	{name: "cut in the 64-bit length", send: cut(6, func(p *peer) []byte { return p.text(string(repeat("x", 70000)), true) }), answer: lost(), rule: ruleTruncated},
	{name: "cut in the masking key", send: cut(4, textFrame), answer: lost(), rule: ruleTruncated},
	{name: "cut in the payload", send: cut(9, textFrame), answer: lost(), rule: ruleTruncated},
	{name: "cut between the fragments of a message", send: func(p *peer) []byte { return p.text("first fragment", false) }, answer: lost(), rule: ruleTruncated},
	{name: "cut in a close frame's payload", send: cut(7, func(p *peer) []byte { return p.closeFrame(1000, "bye") }), answer: lost(), rule: ruleTruncated},
}

func textFrame(p *peer) []byte { return p.text("hello, world", true) }

func headerOnly(op byte, n uint64) func(*peer) []byte {
	return func(p *peer) []byte {
		f, h := p.frameH(op, true, nil, withDeclaredLen(n))
		return f[:h]
	}
}

func closeCode(code uint16) func(*peer) []byte {
	return func(p *peer) []byte { return p.closeFrame(code, "") }
}

func join(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// TestBadInputFrames sends each malformed frame to our server over HTTP/1.1 and HTTP/2, with
// its connection in websocket.Accept, and in websocket.Open where the conformance suite does
// not prove the answer already.
func TestBadInputFrames(t *testing.T) {
	for _, accept := range []bool{false, true} {
		name := "Open"
		if accept {
			name = "Accept"
		}
		t.Run(name, func(t *testing.T) {
			var cases []conformanceCase
			for _, f := range badFrames {
				if !accept && f.proven != "" {
					continue
				}
				cases = append(cases, conformanceCase{id: f.name, only: serverSide,
					cfg: func(c *endpointConfig) { c.accept = accept },
					run: func(p *peer) {
						p.write(f.send(p))
						f.answer.check(p, f.rule)
					}})
			}
			runCases(t, cases)
		})
	}
	// The corpus, as bytes: masked with a fixed key, so that the table is the same each run.
	p := &peer{side: serverSide, rng: rand.New(rand.NewSource(1))}
	t.Logf("%-50s %-34s %-26s %s", "frame", "bytes (first 16)", "answer", "rule")
	for _, f := range badFrames {
		b := f.send(p)
		hex := fmt.Sprintf("% x", b[:min(len(b), 16)])
		if len(b) > 16 {
			hex += fmt.Sprintf(" (%d)", len(b))
		}
		see := ""
		if f.proven != "" {
			see = " (also conformance case " + f.proven + ")"
		}
		t.Logf("%-50s %-34s %-26s %s%s", f.name, hex, f.answer, f.rule, see)
	}
}
