package websocket_test

// Autobahn group 6: UTF-8 handling of text messages (RFC 6455 sections 5.6 and 8.1), against our
// server and our client, including the fail-fast cases: the connection must be failed with 1007
// as soon as the invalid byte arrives, while the rest of the frame/message is withheld.

import (
	"fmt"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

const rfcUTF8 = "RFC 6455 8.1/5.6 and 7.4.1: text that is not valid UTF-8 MUST fail the connection, code 1007"

// kosme is "κόσμε", the UTF-8 test string of Markus Kuhn's test file that Autobahn uses.
const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

type utf8Seq struct {
	valid   bool
	payload string
}

type utf8Group struct {
	title string
	seqs  []utf8Seq
}

// autobahnUTF8Groups returns the sequences of Autobahn's cases 6.5 to 6.23, in order
// (case6_x_x.py, from http://www.cl.cam.ac.uk/~mgk25/ucs/examples/UTF-8-test.txt).
func autobahnUTF8Groups() []utf8Group {
	v := func(s ...string) []utf8Seq {
		var out []utf8Seq
		for _, x := range s {
			out = append(out, utf8Seq{true, x})
		}
		return out
	}
	inv := func(s ...string) []utf8Seq {
		var out []utf8Seq
		for _, x := range s {
			out = append(out, utf8Seq{false, x})
		}
		return out
	}
	var gs []utf8Group

	// 6.5
	gs = append(gs, utf8Group{"Some valid UTF-8 sequences", v(
		"hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", kosme)})
	// 6.6: every prefix of κόσμε; valid exactly when it ends on a code point boundary.
	var prefixes []utf8Seq
	for i := 1; i <= len(kosme); i++ {
		prefixes = append(prefixes, utf8Seq{i == 2 || i == 5 || i == 7 || i == 9 || i == 11, kosme[:i]})
	}
	gs = append(gs, utf8Group{"All prefixes of a valid UTF-8 string that contains multi-byte code points", prefixes})
	// 6.7 - 6.11
	gs = append(gs,
		utf8Group{"First possible sequence of a certain length", v("\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80")},
		utf8Group{"First possible sequence length 5/6 (invalid codepoints)", inv("\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80")},
		utf8Group{"Last possible sequence of a certain length", v("\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf")},
		utf8Group{"Last possible sequence length 4/5/6 (invalid codepoints)", inv("\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf")},
		utf8Group{"Other boundary conditions", append(v("\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"), inv("\xf4\x90\x80\x80")...)},
	)
	// 6.12 unexpected continuation bytes
	var cont []byte
	for b := 0x80; b < 0xbf; b++ {
		cont = append(cont, byte(b))
	}
	gs = append(gs, utf8Group{"Unexpected continuation bytes", inv(
		"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", string(cont))})
	// 6.13 lonely start characters, each followed by a space
	var lonely []utf8Seq
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for b := r[0]; b < r[1]; b++ {
			s = append(s, byte(b), 0x20)
		}
		lonely = append(lonely, utf8Seq{false, string(s)})
	}
	gs = append(gs, utf8Group{"Lonely start characters", lonely})
	// 6.14, 6.15
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	concat := ""
	for _, s := range missing {
		concat += s
	}
	gs = append(gs,
		utf8Group{"Sequences with last continuation byte missing", inv(missing...)},
		utf8Group{"Concatenation of incomplete sequences", inv(concat)},
		utf8Group{"Impossible bytes", inv("\xfe", "\xff", "\xfe\xfe\xff\xff")},
		utf8Group{"Examples of an overlong ASCII character", inv("\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf")},
		utf8Group{"Maximum overlong sequences", inv("\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf")},
		utf8Group{"Overlong representation of the NUL character", inv("\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80")},
		utf8Group{"Single UTF-16 surrogates", inv("\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf")},
		utf8Group{"Paired UTF-16 surrogates", inv(
			"\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
			"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf")},
	)
	// 6.22 non-characters: valid UTF-8 (RFC 3629)
	nonchars := v("\xef\xbf\xbe", "\xef\xbf\xbf")
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // above U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				if z1 == 0xf0 && z2 == 0x8f {
					continue // overlong
				}
				nonchars = append(nonchars, utf8Seq{true, string([]byte{z1, z2, 0xbf, z3})})
			}
		}
	}
	gs = append(gs,
		utf8Group{"Non-character code points (valid UTF-8)", nonchars},
		utf8Group{"Unicode specials (i.e. replacement char)", v("\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf")},
	)
	return gs
}

func TestAutobahnUTF8(t *testing.T) {
	const hello = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!" // Hello-µ@ßöäüàá-UTF-8!!
	// 6.3.1/6.3.2: invalid exactly at byte 12 (0xa0 after 0xed: a surrogate).
	const invalid631 = kosme + "\xed\xa0\x80" + "\x65\x64\x69\x74\x65\x64"
	// 6.4.x: invalid exactly at byte 12 (0x90 after 0xf4: above U+10FFFF).
	const part1, part2, part3 = kosme, "\xf4\x90\x80\x80", "\x65\x64\x69\x74\x65\x64"
	const payload641 = part1 + part2 + part3

	octetFragments := func(p *peer, s string) [][]byte {
		var fs [][]byte
		for i := 0; i < len(s); i++ {
			op := opCont
			if i == 0 {
				op = opText
			}
			fs = append(fs, p.frame(op, i == len(s)-1, []byte(s[i:i+1])))
		}
		return fs
	}

	cases := []conformanceCase{
		{id: "6.1.1", run: func(p *peer) {
			p.send(p.text("", true))
			p.expectText("")
			p.closeNormally()
		}},
		{id: "6.1.2", run: func(p *peer) {
			p.send(p.text("", false), p.cont(nil, false), p.cont(nil, true))
			p.expectText("")
			p.closeNormally()
		}},
		{id: "6.1.3", run: func(p *peer) {
			p.send(p.text("", false), p.cont([]byte("middle frame payload"), false), p.cont(nil, true))
			p.expectText("middle frame payload")
			p.closeNormally()
		}},
		{id: "6.2.1", run: func(p *peer) {
			p.send(p.text(hello, true))
			p.expectText(hello)
			p.closeNormally()
		}},
		{id: "6.2.2", run: func(p *peer) {
			// Split on a code point boundary: "Hello-µ@ßöä" + "üàá-UTF-8!!".
			p.send(p.text(hello[:15], false), p.cont([]byte(hello[15:]), true))
			p.expectText(hello)
			p.closeNormally()
		}},
		{id: "6.2.3", run: func(p *peer) {
			p.send(octetFragments(p, hello)...)
			p.expectText(hello)
			p.closeNormally()
		}},
		{id: "6.2.4", run: func(p *peer) {
			p.send(octetFragments(p, kosme)...)
			p.expectText(kosme)
			p.closeNormally()
		}},
		{id: "6.3.1", run: func(p *peer) {
			p.send(p.text(invalid631, true))
			p.expectFail(websocket.StatusInvalidFramePayloadData, rfcUTF8)
		}},
		{id: "6.3.2", run: func(p *peer) {
			p.send(octetFragments(p, invalid631)...)
			p.expectFail(websocket.StatusInvalidFramePayloadData, rfcUTF8)
		}},
		// 6.4.x fail fast: the part that makes the payload invalid is sent, the rest is withheld
		// until our side has failed the connection. Autobahn waits 1 s after each part; we do not
		// need to: whatever the timing, the close must arrive without the rest.
		{id: "6.4.1", run: func(p *peer) {
			p.send(p.text(part1, false))
			p.send(p.cont([]byte(part2), false)) // the 3rd frame (part3, FIN) is withheld
			p.expectFailFast(websocket.StatusInvalidFramePayloadData, rfcUTF8+" (fail fast: before the message's last frame)")
		}},
		{id: "6.4.2", run: func(p *peer) {
			p.send(p.text(payload641[:12], false))
			p.send(p.cont([]byte(payload641[12:13]), false)) // up to and including the offending 0x90
			p.expectFailFast(websocket.StatusInvalidFramePayloadData, rfcUTF8+" (fail fast: before the message's last frame)")
		}},
		{id: "6.4.3", run: func(p *peer) {
			// One frame of 21 bytes, sent in 3 chops; the 3rd chop is withheld.
			f, h := p.frameH(opText, true, []byte(payload641))
			p.write(f[:h+len(part1)])
			p.write(f[h+len(part1) : h+len(part1)+len(part2)])
			p.expectFailFast(websocket.StatusInvalidFramePayloadData, rfcUTF8+" (fail fast: before the frame's payload is complete)")
		}},
		{id: "6.4.4", run: func(p *peer) {
			f, h := p.frameH(opText, true, []byte(payload641))
			p.write(f[:h+12])
			p.write(f[h+12 : h+13]) // the offending 0x90; the remaining 8 bytes are withheld
			p.expectFailFast(websocket.StatusInvalidFramePayloadData, rfcUTF8+" (fail fast: before the frame's payload is complete)")
		}},
	}

	// 6.5 - 6.23: one unfragmented text message per sequence.
	for gi, g := range autobahnUTF8Groups() {
		for si, s := range g.seqs {
			id := fmt.Sprintf("6.%d.%d", gi+5, si+1)
			if s.valid {
				cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
					p.send(p.text(s.payload, true))
					p.expectText(s.payload)
					p.closeNormally()
				}})
			} else {
				cases = append(cases, conformanceCase{id: id, run: func(p *peer) {
					p.send(p.text(s.payload, true))
					p.expectFail(websocket.StatusInvalidFramePayloadData, rfcUTF8+" ("+g.title+")")
				}})
			}
		}
	}

	// Our own fail-fast positions: a frame much longer than what is sent; the invalid byte arrives
	// early and the rest is withheld, so only an incremental validator can answer 1007.
	type fastCase struct {
		id      string
		first   []byte // a complete first (non-final) text frame's payload, or nil
		prefix  string // payload bytes sent of the (next) frame, ending with the offending byte
		declLen uint64 // the frame's declared payload length
	}
	fast := []fastCase{
		{id: "6.fast.1", prefix: "\xff", declLen: 1000},                         // impossible byte first, 16-bit length
		{id: "6.fast.2", prefix: "Hello\xc0", declLen: 65536},                   // overlong lead byte, 64-bit length
		{id: "6.fast.3", prefix: kosme + "\xed\xa0", declLen: 200},              // surrogate, invalid at the 2nd byte
		{id: "6.fast.4", prefix: "ab\xf4\x90", declLen: 300},                    // above U+10FFFF
		{id: "6.fast.5", prefix: "\xf8", declLen: 128},                          // 5-byte form
		{id: "6.fast.6", prefix: "abc\xe0\x80", declLen: 4096},                  // overlong 3-byte form
		{id: "6.fast.7", first: []byte("hello"), prefix: "\x80", declLen: 1000}, // stray continuation byte, 2nd frame
		{id: "6.fast.8", first: []byte("ab\xf0"), prefix: "\x28", declLen: 500}, // sequence split across frames
		{id: "6.fast.9", first: []byte("ab\xe2\x82"), prefix: "\xc0", declLen: 70000},
	}
	for _, c := range fast {
		for _, stream := range []bool{false, true} {
			id := c.id
			var cfg func(*endpointConfig)
			if stream {
				id += ".stream"
				cfg = func(e *endpointConfig) { e.echo = echoStream; e.chunk = 512 }
			}
			cases = append(cases, conformanceCase{id: id, cfg: cfg, run: func(p *peer) {
				op := opText
				if c.first != nil {
					p.send(p.frame(opText, false, c.first))
					op = opCont
				}
				full := repeat(c.prefix+"valid tail ", int(c.declLen))
				f, h := p.frameH(op, true, full)
				p.write(f[:h+len(c.prefix)]) // the rest of the payload is never sent
				p.expectFailFast(websocket.StatusInvalidFramePayloadData,
					fmt.Sprintf("%s (fail fast: after %d of %d payload bytes)", rfcUTF8, len(c.prefix), c.declLen))
			}})
		}
	}

	// Our own: messages that end inside a code point.
	cases = append(cases,
		conformanceCase{id: "6.x.1", run: func(p *peer) {
			// The final (empty) fragment ends the message after a lead byte.
			p.send(p.text(kosme+"\xe1", false), p.cont(nil, true))
			p.expectFail(websocket.StatusInvalidFramePayloadData, rfcUTF8+" (message ends inside a code point)")
		}},
		conformanceCase{id: "6.x.2", run: func(p *peer) {
			p.send(p.text("\xf0\x9f", false), p.cont([]byte("\x98"), true)) // 3 of the 4 bytes of U+1F600
			p.expectFail(websocket.StatusInvalidFramePayloadData, rfcUTF8+" (message ends inside a code point)")
		}},
		conformanceCase{id: "6.x.3", run: func(p *peer) {
			// A 4-byte code point split 1+1+1+1 over four frames is valid.
			p.send(p.text("\xf0", false), p.cont([]byte("\x9f"), false), p.cont([]byte("\x98"), false), p.cont([]byte("\x80"), true))
			p.expectText("\xf0\x9f\x98\x80")
			p.closeNormally()
		}},
		conformanceCase{id: "6.x.4", run: func(p *peer) {
			// Binary messages are not UTF-8: invalid bytes are echoed untouched.
			p.send(p.binary([]byte("\xff\xfe\xed\xa0\x80\xc0\xaf"), true))
			p.expectMessage(opBinary, []byte("\xff\xfe\xed\xa0\x80\xc0\xaf"))
			p.closeNormally()
		}},
		conformanceCase{id: "6.x.5", run: func(p *peer) {
			// Validation state does not leak from one message into the next: a message ending
			// on a complete code point, then one starting with a continuation byte.
			p.send(p.text("ok\xc2\xa2", true), p.text("\xa2", true))
			p.expectText("ok\xc2\xa2")
			p.expectFail(websocket.StatusInvalidFramePayloadData, rfcUTF8)
		}},
		conformanceCase{id: "6.x.6", run: func(p *peer) {
			// A ping between the fragments of a code point does not disturb the validator.
			p.send(p.text("\xe2\x82", false), p.ping([]byte("mid")), p.cont([]byte("\xac"), true))
			p.expectPong([]byte("mid"))
			p.expectText("\xe2\x82\xac")
			p.closeNormally()
		}},
	)

	runCases(t, sortCases(cases))
}
