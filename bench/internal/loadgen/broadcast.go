//go:build linux

package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/duplexws/duplex/bench/internal/hexstamp"
)

type slot struct {
	seq    uint64
	sentAt int64
	got    int
	live   bool
}

// seatSubscribers waits for the hub's subscribe replies (HubRoom), gives
// the server time to seat every subscriber, and names the publisher.
func (g *gen) seatSubscribers(events func(Event), res *Result) error {
	if g.cfg.HubRoom != "" {
		if err := g.waitSubscribed(); err != nil {
			return err
		}
		res.Subscribed = g.subscribed
	}
	if err := g.pollFor(300 * time.Millisecond); err != nil { // let the server seat every subscriber
		return err
	}
	events(Event{Kind: "ready"})
	g.pub = g.conns[0]
	g.expect = g.open
	if g.cfg.HubRoom != "" {
		g.expect = g.subscribed
	}
	return nil
}

// buildPublish frames the message the publisher sends, its sequence number
// (and with JSON its send time) stamped in at each publish.
func (g *gen) buildPublish() error {
	if g.cfg.JSON && !g.ws {
		return errors.New("loadgen: JSON broadcast is over WebSocket")
	}
	if g.cfg.Compress {
		return errors.New("loadgen: broadcast is uncompressed")
	}
	size := max(g.cfg.Payload, 16)
	var payload []byte
	if g.cfg.JSON {
		payload, g.pubStamp = stampTemplate(max(size, 40))
		g.pubTemplate = ClientText(payload)
	} else {
		payload = Payload(size)
		g.pubTemplate = g.frameOf(payload)
	}
	g.pubHdr = len(g.pubTemplate) - len(payload)
	return nil
}

// publish sends broadcast messages while fewer than Window are in flight.
func (g *gen) publish(now int64) {
	if !g.running || g.pub == nil || g.pub.state != stOpen {
		return
	}
	for g.outstanding < g.cfg.Window {
		g.seq++
		s := &g.slots[g.seq%uint64(len(g.slots))]
		*s = slot{seq: g.seq, sentAt: now, live: true}
		g.outstanding++
		if g.measuring {
			g.published++
		}
		start := len(g.pubOut)
		g.pubOut = append(g.pubOut, g.pubTemplate...)
		if g.cfg.JSON {
			var sb [32]byte
			hexstamp.Put(sb[:16], g.seq)
			hexstamp.Put(sb[16:], uint64(now))
			for i, b := range sb {
				j := g.pubStamp + i // index in the payload
				g.pubOut[start+g.pubHdr+j] = b ^ maskKey[j&3]
			}
			continue
		}
		var sb [8]byte
		binary.LittleEndian.PutUint64(sb[:], g.seq)
		for i := 0; i < 8; i++ {
			b := sb[i]
			if g.ws {
				b ^= maskKey[i&3]
			}
			g.pubOut[start+g.pubHdr+i] = b
		}
	}
	g.flushPub()
}

func (g *gen) flushPub() {
	c := g.pub
	if c == nil || c.state != stOpen {
		return
	}
	for len(g.pubOut) > 0 {
		n, e := rawWrite(c.fd, g.pubOut)
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
		g.pubOut = g.pubOut[:copy(g.pubOut, g.pubOut[n:])]
	}
	g.wantOut(c, false)
}

// broadcastFrame handles a whole message on a subscriber: a hub reply while
// it subscribes, else a delivery.
func (g *gen) broadcastFrame(c *conn, now int64) {
	switch {
	case c.subscribing:
		g.subscribeReply(c)
	case g.cfg.JSON:
		seq, sent, ok := stamp(c.tail[:])
		if !ok || c.msgBytes < int64(len(c.tail)) {
			g.setVerifyErr(fmt.Sprintf("a delivery without a stamp at its end: %q", c.tail[:]))
			return
		}
		g.delivered(seq, now, sent, c.msgBytes)
	default:
		g.delivered(binary.LittleEndian.Uint64(c.head[:8]), now, -1, c.seen)
	}
}

// delivered counts one delivery of message seq; sent is the send time the
// message carried (JSON), or -1 to take the publisher's record of it.
func (g *gen) delivered(seq uint64, now, sent int64, size int64) {
	s := &g.slots[seq%uint64(len(g.slots))]
	if !s.live || s.seq != seq {
		return // retired already (by timeout)
	}
	if sent < 0 {
		sent = s.sentAt
	}
	s.got++
	g.total++
	if g.measuring {
		g.hist.record(now - sent)
		g.deliveries++
		g.bytes += size
	}
	if s.got >= g.expect {
		s.live = false
		g.outstanding--
		g.publish(now)
	}
}

// retireStale gives up on messages older than 2 s, so that one lost delivery
// does not stop the run.
func (g *gen) retireStale(now int64) {
	for i := range g.slots {
		s := &g.slots[i]
		if s.live && now-s.sentAt > int64(2*time.Second) {
			s.live = false
			g.outstanding--
			if g.measuring {
				g.lost += int64(g.expect - s.got)
			}
		}
	}
}
