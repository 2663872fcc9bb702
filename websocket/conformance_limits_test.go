package websocket_test

// Autobahn group 9 (large messages, many messages) and group 10 (auto-fragmentation), against our
// server and our client, plus our own ReadLimit cases ("9.limit.*", close code 1009).
//
// Group 9 is scaled so that the whole group runs in seconds under -race on a small machine:
// single messages up to 4 MiB (Autobahn: 16 MiB), fragmented and chopped messages of 1 MiB
// (Autobahn: 4 MiB and 1 MiB), and 200 round trips per size in 9.7/9.8 (Autobahn: 1000).
// The assertions are Autobahn's and stricter: the exact payload and opcode come back.

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

const rfcTooBig = "RFC 6455 7.4.1: 1009 = a message too big to process (here: larger than Options.ReadLimit)"

func withLimit(n int64) func(*endpointConfig) {
	return func(c *endpointConfig) { c.opts.ReadLimit = n }
}

// fragments splits payload into data frames of at most size bytes (first opcode op, then continuations).
func (p *peer) fragments(op byte, payload []byte, size int) []byte {
	var out [][]byte
	for i := 0; ; i += size {
		end := min(i+size, len(payload))
		o := opCont
		if i == 0 {
			o = op
		}
		out = append(out, p.frame(o, end == len(payload), payload[i:end]))
		if end == len(payload) {
			break
		}
	}
	return bytes.Join(out, nil)
}

func TestAutobahnLimits(t *testing.T) {
	const (
		KiB = 1 << 10
		MiB = 1 << 20
	)
	big := func(c *endpointConfig) { c.opts.ReadLimit = 32 * MiB }
	var cases []conformanceCase
	type kind struct {
		op   byte
		fill string
	}
	textK, binK := kind{opText, "*"}, kind{opBinary, "\xfe"}

	// 9.1.x text, 9.2.x binary: one message of 64 KiB .. 4 MiB, one frame.
	for gi, k := range []kind{textK, binK} {
		for i, n := range []int{64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB} {
			cases = append(cases, conformanceCase{id: fmt.Sprintf("9.%d.%d", gi+1, i+1), cfg: big, run: func(p *peer) {
				payload := repeat(k.fill, n)
				p.send(p.frame(k.op, true, payload))
				p.expectMessage(k.op, payload)
				p.closeNormally()
			}})
		}
	}
	// 9.3.x text, 9.4.x binary: a 1 MiB message in frames of 64 B .. 1 MiB.
	for gi, k := range []kind{textK, binK} {
		for i, fs := range []int{64, 256, 1 * KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB} {
			cases = append(cases, conformanceCase{id: fmt.Sprintf("9.%d.%d", gi+3, i+1), cfg: big, run: func(p *peer) {
				payload := repeat(k.fill, 1*MiB)
				p.send(p.fragments(k.op, payload, fs))
				p.expectMessage(k.op, payload)
				p.closeNormally()
			}})
		}
	}
	// 9.5.x text, 9.6.x binary: a 1 MiB message in one frame, written in chops of 64 .. 2048 bytes.
	for gi, k := range []kind{textK, binK} {
		for i, chop := range []int{64, 128, 256, 512, 1024, 2048} {
			cases = append(cases, conformanceCase{id: fmt.Sprintf("9.%d.%d", gi+5, i+1), cfg: big, run: func(p *peer) {
				payload := repeat(k.fill, 1*MiB)
				p.sendChopped(chop, p.frame(k.op, true, payload))
				p.expectMessage(k.op, payload)
				p.closeNormally()
			}})
		}
	}
	// 9.7.x text, 9.8.x binary: many messages of 0 B .. 4 KiB, each waiting for its echo; echoed
	// with SendText/SendBinary + Flush. On the client side, every frame must have its own key.
	const rounds = 200
	for gi, k := range []kind{textK, binK} {
		for i, n := range []int{0, 16, 64, 256, 1 * KiB, 4 * KiB} {
			cfg := func(c *endpointConfig) { c.echo = echoSendFlush }
			cases = append(cases, conformanceCase{id: fmt.Sprintf("9.%d.%d", gi+7, i+1), cfg: cfg, run: func(p *peer) {
				payload := repeat(k.fill, max(n, 1))[:n]
				for range rounds {
					p.send(p.frame(k.op, true, payload))
					p.expectMessage(k.op, payload)
				}
				if p.side == clientSide {
					seen := map[[4]byte]bool{}
					for _, key := range p.maskKeys {
						seen[key] = true
					}
					// 32-bit random keys: a handful of collisions in a few hundred frames is already very unlikely.
					if len(seen) < len(p.maskKeys)-2 {
						p.t.Errorf("our client used %d distinct masking keys in %d frames; RFC 6455 5.3: a fresh, unpredictable key per frame",
							len(seen), len(p.maskKeys))
					}
				}
				p.closeNormally()
			}})
		}
	}

	// Our own: ReadLimit and 1009.
	lim := withLimit(1024)
	cases = append(cases,
		conformanceCase{id: "9.limit.1", cfg: lim, run: func(p *peer) {
			payload := repeat("x", 1024) // exactly the limit
			p.send(p.frame(opText, true, payload))
			p.expectMessage(opText, payload)
			p.closeNormally()
		}},
		conformanceCase{id: "9.limit.2", cfg: lim, run: func(p *peer) {
			p.send(p.frame(opText, true, repeat("x", 1025)))
			p.expectFail(websocket.StatusMessageTooBig, rfcTooBig)
		}},
		conformanceCase{id: "9.limit.3", cfg: lim, run: func(p *peer) {
			p.send(p.frame(opBinary, true, repeat("\xfe", 1025)))
			p.expectFail(websocket.StatusMessageTooBig, rfcTooBig)
		}},
		conformanceCase{id: "9.limit.4", cfg: lim, run: func(p *peer) {
			// Three fragments of 400: the message passes the limit in its last fragment.
			p.send(p.fragments(opBinary, repeat("\x01", 1200), 400))
			p.expectFail(websocket.StatusMessageTooBig, rfcTooBig+" (sum of the fragments)")
		}},
		conformanceCase{id: "9.limit.5", cfg: lim, run: func(p *peer) {
			// The frame header alone announces more than the limit; its payload is withheld.
			f, h := p.frameH(opBinary, true, repeat("\x01", 2000))
			p.write(f[:h])
			p.expectFailFast(websocket.StatusMessageTooBig, rfcTooBig+" (known from the frame header, before any payload)")
		}},
		conformanceCase{id: "9.limit.6", cfg: lim, run: func(p *peer) {
			// Two fragments of 600: the header of the second already makes the message too big.
			p.send(p.frame(opText, false, repeat("y", 600)))
			f, h := p.frameH(opCont, true, repeat("y", 600))
			p.write(f[:h])
			p.expectFailFast(websocket.StatusMessageTooBig, rfcTooBig+" (known from the 2nd frame's header)")
		}},
		conformanceCase{id: "9.limit.7", run: func(p *peer) {
			// The default limit (16 MiB): a header announcing 16 MiB + 1, payload withheld.
			f, h := p.frameH(opBinary, true, nil, withDeclaredLen(16*MiB+1))
			p.write(f[:h])
			p.expectFailFast(websocket.StatusMessageTooBig, rfcTooBig+" (default ReadLimit 16 MiB)")
		}},
		conformanceCase{id: "9.limit.8", run: func(p *peer) {
			// A header announcing 2^40 bytes (MSB clear: well-formed), payload withheld.
			f, h := p.frameH(opBinary, true, nil, withDeclaredLen(1<<40))
			p.write(f[:h])
			p.expectFailFast(websocket.StatusMessageTooBig, rfcTooBig+" (a 1 TiB frame)")
		}},
		conformanceCase{id: "9.limit.9", cfg: withLimit(-1), run: func(p *peer) {
			// ReadLimit -1: no limit; a 17 MiB message (over the default) is echoed.
			payload := repeat("\xfe", 17*MiB)
			errc := p.sendAsync(p.frame(opBinary, true, payload), 0)
			p.expectMessage(opBinary, payload)
			if err := <-errc; err != nil {
				p.t.Fatalf("raw peer write: %v", err)
			}
			p.closeNormally()
		}},
		conformanceCase{id: "9.limit.10", cfg: lim, run: func(p *peer) {
			// Control frames do not count towards the message: 1024 bytes with pings between fragments.
			p.send(p.frame(opText, false, repeat("z", 512)), p.ping(repeat("p", 125)), p.cont(repeat("z", 512), true))
			p.expectPong(repeat("p", 125))
			p.expectMessage(opText, repeat("z", 1024))
			p.closeNormally()
		}},
		conformanceCase{id: "9.limit.11", cfg: lim, run: func(p *peer) {
			// The limit is per message: many messages of 1000 bytes in a row are fine.
			var fs [][]byte
			for range 10 {
				fs = append(fs, p.frame(opBinary, true, repeat("m", 1000)))
			}
			p.send(fs...)
			for range 10 {
				p.expectMessage(opBinary, repeat("m", 1000))
			}
			p.closeNormally()
		}},
	)
	runCases(t, sortCases(cases))
}

func TestAutobahnAutoFragmentation(t *testing.T) {
	const MiB = 1 << 20
	stream := func(chunk int) func(*endpointConfig) {
		return func(c *endpointConfig) { c.echo = echoStream; c.chunk = chunk; c.opts.ReadLimit = 32 * MiB }
	}
	// checkFragmented asserts that a message our side streamed came as a proper fragmented message
	// of at least minFrames frames (readFrame/next already checked opcodes, FIN and masking).
	checkFragmented := func(p *peer, e event, minFrames int) {
		p.t.Helper()
		if len(e.frames) < minFrames {
			p.t.Errorf("our %s's Writer sent the %d-byte message in %d frame(s); want at least %d (API: Writer is fragmented, it does not buffer a whole message)",
				p.side, len(e.payload), len(e.frames), minFrames)
		}
		for i, f := range e.frames {
			if (i == 0) != (f.opcode != opCont) {
				p.t.Errorf("frame %d of the message has opcode %#x (RFC 6455 5.4)", i, f.opcode)
			}
			if f.fin != (i == len(e.frames)-1) {
				p.t.Errorf("frame %d of %d has FIN=%v (RFC 6455 5.4)", i, len(e.frames), f.fin)
			}
		}
	}
	cases := []conformanceCase{
		{id: "10.1.1", run: func(p *peer) {
			// 65536 bytes auto-fragmented by the peer into frames of 1300 bytes: echoed whole.
			payload := repeat("*", 65536)
			p.send(p.fragments(opText, payload, 1300))
			p.expectMessage(opText, payload)
			p.closeNormally()
		}},
		// Our own: our side streams its echo through Reader/Writer.
		{id: "10.2.1", cfg: stream(4096), run: func(p *peer) {
			payload := repeat("\x00\x01\x02\xfd\xfe\xff", 1*MiB)
			errc := p.sendAsync(p.frame(opBinary, true, payload), 0)
			e := p.expectMessage(opBinary, payload)
			if err := <-errc; err != nil {
				p.t.Fatalf("raw peer write: %v", err)
			}
			checkFragmented(p, e, 2)
			p.closeNormally()
		}},
		{id: "10.2.2", cfg: stream(1000), run: func(p *peer) {
			// Multi-byte UTF-8 streamed in chunks that split code points: each frame need not be
			// valid UTF-8 on its own, the whole message is.
			payload := repeat(kosme, 1*MiB/2+3)
			errc := p.sendAsync(p.fragments(opText, payload, 7919), 0)
			e := p.expectMessage(opText, payload)
			if err := <-errc; err != nil {
				p.t.Fatalf("raw peer write: %v", err)
			}
			checkFragmented(p, e, 2)
			p.closeNormally()
		}},
		{id: "10.2.3", cfg: stream(4096), run: func(p *peer) {
			p.send(p.binary(nil, true), p.text("", true))
			p.expectMessage(opBinary, nil)
			p.expectText("")
			p.closeNormally()
		}},
		{id: "10.2.4", cfg: stream(64), run: func(p *peer) {
			// A ping between the incoming fragments while our side is already streaming the echo.
			p.send(p.text("first half, ", false), p.ping([]byte("while streaming")), p.cont([]byte("second half"), true))
			p.expectPong([]byte("while streaming"))
			p.expectText("first half, second half")
			p.closeNormally()
		}},
		{id: "10.2.5", cfg: stream(4096), run: func(p *peer) {
			// Several streamed messages back to back keep their order and boundaries.
			var fs [][]byte
			for i := range 5 {
				fs = append(fs, p.fragments(opBinary, repeat(fmt.Sprint(i), 10000), 3000))
			}
			p.send(fs...)
			for i := range 5 {
				p.expectMessage(opBinary, repeat(fmt.Sprint(i), 10000))
			}
			p.closeNormally()
		}},
	}
	runCases(t, cases)
}
