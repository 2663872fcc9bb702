package websocket_test

// Autobahn group 5: fragmentation (RFC 6455 section 5.4), against our server and our client.

import (
	"testing"

	"github.com/duplexws/duplex/websocket"
)

const (
	rfcCtlFrag = "RFC 6455 5.4/5.5: control frames MUST NOT be fragmented"
	rfcNoCont  = "RFC 6455 5.4: a continuation frame with no message to continue is a protocol error"
	rfcNewData = "RFC 6455 5.4: the fragments of one message MUST NOT be interleaved with another data frame; after a non-final first frame only continuation (and control) frames may follow"
)

// sendBy writes frames in one chop, frame by frame, or octet by octet, as Autobahn's variants do.
func (p *peer) sendBy(how string, frames ...[]byte) {
	p.t.Helper()
	switch how {
	case "chop":
		p.send(frames...)
	case "frame":
		p.sendEach(frames...)
	case "octet":
		p.sendChopped(1, frames...)
	default:
		p.t.Fatalf("sendBy %q", how)
	}
}

func TestAutobahnFragmentation(t *testing.T) {
	frag := func(n int) []byte { return []byte("fragment" + string(rune('0'+n))) }

	cases := []conformanceCase{
		{id: "5.1", run: func(p *peer) {
			p.send(p.frame(opPing, false, frag(1)), p.cont(frag(2), true))
			p.expectFail(websocket.StatusProtocolError, rfcCtlFrag)
		}},
		{id: "5.2", run: func(p *peer) {
			p.send(p.frame(opPong, false, frag(1)), p.cont(frag(2), true))
			p.expectFail(websocket.StatusProtocolError, rfcCtlFrag)
		}},
	}

	// 5.3-5.5: a text message in 2 fragments, in one chop, octet-wise, frame-wise.
	for id, how := range map[string]string{"5.3": "chop", "5.4": "octet", "5.5": "frame"} {
		cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
			p.sendBy(how, p.text("fragment1", false), p.cont(frag(2), true))
			p.expectText("fragment1fragment2")
			p.closeNormally()
		}})
	}
	// 5.6-5.8: the same with a ping in between: pong first, then the message.
	for id, how := range map[string]string{"5.6": "chop", "5.7": "octet", "5.8": "frame"} {
		cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
			p.sendBy(how, p.text("fragment1", false), p.ping([]byte("ping payload")), p.cont(frag(2), true))
			p.expectPong([]byte("ping payload"))
			p.expectText("fragment1fragment2")
			p.closeNormally()
		}})
	}
	// 5.9-5.14: a continuation frame (FIN set for 5.9-5.11, clear for 5.12-5.14) with nothing to
	// continue, then a text message: the connection fails, nothing is echoed.
	for _, c := range []struct {
		id, how string
		fin     bool
	}{
		{"5.9", "chop", true}, {"5.10", "frame", true}, {"5.11", "octet", true},
		{"5.12", "chop", false}, {"5.13", "frame", false}, {"5.14", "octet", false},
	} {
		cases = append(cases, conformanceCase{id: c.id, run: func(p *peer) {
			p.sendBy(c.how, p.cont([]byte("non-continuation payload"), c.fin), p.text("Hello, world!", true))
			p.expectFail(websocket.StatusProtocolError, rfcNoCont)
		}})
	}
	cases = append(cases,
		conformanceCase{id: "5.15", run: func(p *peer) {
			p.send(p.text("fragment1", false), p.cont(frag(2), true), p.cont(frag(3), false), p.text("fragment4", true))
			p.expectText("fragment1fragment2")
			p.expectFail(websocket.StatusProtocolError, rfcNoCont)
		}},
		conformanceCase{id: "5.16", run: func(p *peer) {
			var fs [][]byte
			for range 2 {
				fs = append(fs, p.cont(frag(1), false), p.text("fragment2", false), p.cont(frag(3), true))
			}
			p.send(fs...)
			p.expectFail(websocket.StatusProtocolError, rfcNoCont)
		}},
		conformanceCase{id: "5.17", run: func(p *peer) {
			var fs [][]byte
			for range 2 {
				fs = append(fs, p.cont(frag(1), true), p.text("fragment2", false), p.cont(frag(3), true))
			}
			p.send(fs...)
			p.expectFail(websocket.StatusProtocolError, rfcNoCont)
		}},
		conformanceCase{id: "5.18", run: func(p *peer) {
			p.send(p.text("fragment1", false), p.text("fragment2", true))
			p.expectFail(websocket.StatusProtocolError, rfcNewData)
		}},
	)
	// 5.19/5.20: 5 fragments with 2 pings in between; the first pong must come before the rest of
	// the message is sent (Autobahn waits 1 s there; we wait for the pong instead). 5.20 writes
	// each frame with its own Write.
	for id, how := range map[string]string{"5.19": "chop", "5.20": "frame"} {
		cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
			p.sendBy(how, p.text("fragment1", false), p.cont(frag(2), false), p.ping([]byte("pongme 1!")))
			p.expectPong([]byte("pongme 1!"))
			p.sendBy(how, p.cont(frag(3), false), p.cont(frag(4), false), p.ping([]byte("pongme 2!")), p.cont(frag(5), true))
			p.expectPong([]byte("pongme 2!"))
			p.expectText("fragment1fragment2fragment3fragment4fragment5")
			p.closeNormally()
		}})
	}

	// Our own cases.
	cases = append(cases,
		// A binary frame inside a fragmented text message.
		conformanceCase{id: "5.x.1", run: func(p *peer) {
			p.send(p.text("fragment1", false), p.binary([]byte("x"), true))
			p.expectFail(websocket.StatusProtocolError, rfcNewData)
		}},
		// A non-final binary frame inside a fragmented binary message.
		conformanceCase{id: "5.x.2", run: func(p *peer) {
			p.send(p.binary([]byte{1}, false), p.binary([]byte{2}, false), p.cont([]byte{3}, true))
			p.expectFail(websocket.StatusProtocolError, rfcNewData)
		}},
		// A binary message in 3 fragments with an unsolicited pong and a ping in between.
		conformanceCase{id: "5.x.3", run: func(p *peer) {
			p.send(p.binary([]byte{0, 1}, false), p.pong([]byte("unsolicited")), p.cont([]byte{2, 3}, false),
				p.ping([]byte("p")), p.cont([]byte{4, 5}, true))
			p.expectPong([]byte("p"))
			p.expectMessage(opBinary, []byte{0, 1, 2, 3, 4, 5})
			p.closeNormally()
		}},
		// 100 one-byte fragments, then an empty final fragment.
		conformanceCase{id: "5.x.4", run: func(p *peer) {
			want := repeat("0123456789", 100)
			fs := [][]byte{p.binary(want[:1], false)}
			for i := 1; i < len(want); i++ {
				fs = append(fs, p.cont(want[i:i+1], false))
			}
			fs = append(fs, p.cont(nil, true))
			p.send(fs...)
			p.expectMessage(opBinary, want)
			p.closeNormally()
		}},
		// Two fragmented messages back to back, each with its own first frame.
		conformanceCase{id: "5.x.5", run: func(p *peer) {
			p.send(p.text("ab", false), p.cont([]byte("cd"), true), p.binary([]byte("ef"), false), p.cont([]byte("gh"), true))
			p.expectText("abcd")
			p.expectMessage(opBinary, []byte("efgh"))
			p.closeNormally()
		}},
		// A continuation after a complete (FIN) message has nothing to continue.
		conformanceCase{id: "5.x.6", run: func(p *peer) {
			p.send(p.text("done", true), p.cont([]byte("more"), true))
			p.expectText("done")
			p.expectFail(websocket.StatusProtocolError, rfcNoCont)
		}},
	)
	runCases(t, sortCases(cases))
}

// sortCases orders cases by id the way Autobahn numbers them (5.2 < 5.10), for readable output.
func sortCases(cs []conformanceCase) []conformanceCase {
	less := func(a, b string) bool {
		pa, pb := splitID(a), splitID(b)
		for i := 0; i < len(pa) && i < len(pb); i++ {
			if pa[i] != pb[i] {
				na, ea := atoi(pa[i])
				nb, eb := atoi(pb[i])
				if ea && eb {
					return na < nb
				}
				if ea != eb {
					return ea // numbers before words
				}
				return pa[i] < pb[i]
			}
		}
		return len(pa) < len(pb)
	}
	out := append([]conformanceCase(nil), cs...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && less(out[j].id, out[j-1].id); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func splitID(s string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func atoi(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
