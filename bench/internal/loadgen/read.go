//go:build linux

package loadgen

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// readFrames reads once (epoll is level-triggered: what is left comes back at
// the next wait) and parses what came.
func (g *gen) readFrames(c *conn, now int64) {
	n, e := rawRead(c.fd, g.rbuf)
	if e != 0 {
		if e == unix.EAGAIN || e == unix.EINTR {
			return
		}
		g.lose(c)
		return
	}
	if n == 0 {
		g.lose(c)
		return
	}
	done := g.parse(c, g.rbuf[:n], now)
	if done > 0 && g.running && g.cfg.Mode == ModeEcho && c.state == stOpen {
		g.queue(c, done)
	}
}

// parse consumes server bytes and returns the number of whole echo messages.
func (g *gen) parse(c *conn, b []byte, now int64) int {
	done := 0
	for len(b) > 0 {
		if !c.inPayload {
			var hl int
			var h []byte
			if c.hdrN == 0 && len(b) >= 4 && (g.ws && len(b) >= wsHeaderLen(b[1]) || !g.ws) {
				if g.ws {
					hl = wsHeaderLen(b[1])
				} else {
					hl = 4
				}
				h, b = b[:hl], b[hl:]
			} else {
				for len(b) > 0 {
					c.hdr[c.hdrN] = b[0]
					c.hdrN++
					b = b[1:]
					if g.ws && c.hdrN >= 2 && int(c.hdrN) >= wsHeaderLen(c.hdr[1]) || !g.ws && c.hdrN == 4 {
						break
					}
				}
				if g.ws && (c.hdrN < 2 || int(c.hdrN) < wsHeaderLen(c.hdr[1])) || !g.ws && c.hdrN < 4 {
					return done
				}
				h = c.hdr[:c.hdrN]
				c.hdrN = 0
			}
			if g.ws {
				c.fin = h[0]&0x80 != 0
				c.op = h[0] & 0x0f
				if c.op != 0 { // RSV1 marks a compressed message on its first frame only
					c.rsv1 = h[0]&0x40 != 0
				}
				switch l := h[1] & 0x7f; l {
				case 126:
					c.remain = int64(binary.BigEndian.Uint16(h[2:]))
				case 127:
					c.remain = int64(binary.BigEndian.Uint64(h[2:]))
				default:
					c.remain = int64(l)
				}
			} else {
				c.fin, c.op = true, 2
				c.remain = int64(binary.BigEndian.Uint32(h))
			}
			if c.op != 0 {
				c.msgBytes = 0
			}
			c.seen = 0
			c.inPayload = true
			if c.remain == 0 {
				c.inPayload = false
				done += g.frameDone(c, now)
			}
			continue
		}
		n := int64(len(b))
		if n > c.remain {
			n = c.remain
		}
		p := b[:n]
		if g.cfg.Mode == ModeBroadcast {
			if c.seen < int64(len(c.head)) {
				copy(c.head[c.seen:], p)
			}
			if g.cfg.JSON {
				c.keepTail(p)
			}
		}
		if !c.checked && c.op != 0x8 && c.op != 0x9 && c.op != 0xA && g.cfg.Verify {
			c.vbuf = append(c.vbuf, p...)
		}
		c.seen += n
		c.msgBytes += n
		c.remain -= n
		b = b[n:]
		if c.remain == 0 {
			c.inPayload = false
			done += g.frameDone(c, now)
		}
	}
	return done
}

// frameDone handles a whole frame and returns 1 when it ended an echo message.
func (g *gen) frameDone(c *conn, now int64) int {
	switch c.op {
	case 0x8: // close
		g.lose(c)
		return 0
	case 0x9, 0xA: // ping, pong: servers here send none unasked
		return 0
	}
	if !c.fin {
		return 0
	}
	if !c.checked {
		c.checked = true
		g.check(c)
	}
	switch g.cfg.Mode {
	case ModeEcho:
		return g.echoed(c, now)
	case ModeBroadcast:
		g.broadcastFrame(c, now)
	case ModeIdle:
		g.total++ // an echo of a chat message
	}
	return 0
}
