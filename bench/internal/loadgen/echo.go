//go:build linux

package loadgen

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"
)

// buildEchoFrames prepares what echo connections send: one payload, or with
// compression 64 different ones sent in turn, so that a server keeping the
// compression context cannot send a message back as a reference to the
// previous, identical one.
func (g *gen) buildEchoFrames() {
	size := g.cfg.Payload
	k := 1
	if g.cfg.Compress {
		k = 64
	}
	g.payloads = [][]byte{Payload(size)}
	for i := 1; i < k; i++ {
		g.payloads = append(g.payloads, PayloadSeed(size, int64(size)+int64(i)<<32))
	}
	var round [][]byte
	for _, p := range g.payloads {
		round = append(round, g.frameOf(p))
	}
	rounds := 1 + (g.cfg.Depth+1+k-1)/k
	for r := 0; r < rounds; r++ {
		for _, f := range round {
			g.sendOffs = append(g.sendOffs, len(g.sendBuf))
			g.sendBuf = append(g.sendBuf, f...)
		}
	}
	g.sendOffs = append(g.sendOffs, len(g.sendBuf))
	g.roundLen = g.sendOffs[k]
}

// startEcho sets up a connection just opened for echo: its ring of send
// times, one per message in flight, and where in sendBuf it starts (spread
// over the distinct frames); during the load it starts sending at once.
func (g *gen) startEcho(c *conn) {
	c.times = make([]int64, g.cfg.Depth)
	c.first = c.idx % len(g.payloads)
	c.next, c.woff, c.pending = c.first, g.sendOffs[c.first], 0
	if g.running {
		g.queue(c, g.cfg.Depth)
	}
}

// queue adds k echo messages to c's output and writes what it can.
func (g *gen) queue(c *conn, k int) {
	now := g.now()
	for i := 0; i < k; i++ {
		c.times[c.tt] = now
		c.tt++
		if c.tt == len(c.times) {
			c.tt = 0
		}
		c.pending += g.sendOffs[c.next+1] - g.sendOffs[c.next]
		c.next++
	}
	c.inflight += k
	g.flush(c)
}

// flush writes c's pending output until done or the socket is full.
func (g *gen) flush(c *conn) {
	if c == g.pub && g.cfg.Mode == ModeBroadcast {
		g.flushPub()
		return
	}
	defer g.rewind(c)
	for c.pending > 0 {
		n, e := rawWrite(c.fd, g.sendBuf[c.woff:c.woff+c.pending])
		if e != 0 {
			if e == unix.EAGAIN {
				g.wantOut(c, true)
				return
			}
			if e == unix.EINTR {
				continue
			}
			g.lose(c)
			return
		}
		c.pending -= n
		c.woff += n
	}
	g.wantOut(c, false)
}

// rewind steps c back by whole rounds of frames once they are written: the
// bytes ahead are the same, and sendBuf holds enough rounds for Depth frames
// past the first.
func (g *gen) rewind(c *conn) {
	for c.woff >= g.roundLen {
		c.woff -= g.roundLen
		c.next -= len(g.payloads)
	}
}

// echoed counts a whole echo message on c, records its round trip, and
// returns 1 (the messages to send in its place).
func (g *gen) echoed(c *conn, now int64) int {
	if c.inflight == 0 {
		return 0
	}
	c.inflight--
	g.total++
	sent := c.times[c.th]
	c.th++
	if c.th == len(c.times) {
		c.th = 0
	}
	if g.measuring {
		g.hist.record(now - sent)
		g.msgs++
		g.bytes += c.msgBytes
	}
	return 1
}

// check compares the first message of a connection with what was sent.
func (g *gen) check(c *conn) {
	if !g.cfg.Verify {
		return
	}
	got := c.vbuf
	c.vbuf = nil
	if g.cfg.Mode != ModeEcho {
		return
	}
	if c.rsv1 {
		var err error
		if got, err = Inflate(got); err != nil {
			g.setVerifyErr(fmt.Sprintf("inflate: %v", err))
			return
		}
	}
	want := g.payloads[c.first%len(g.payloads)]
	if !bytes.Equal(got, want) {
		g.setVerifyErr(fmt.Sprintf("echo differs: got %d bytes, want %d", len(got), len(want)))
	}
}
