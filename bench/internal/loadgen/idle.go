//go:build linux

package loadgen

import (
	"time"

	"golang.org/x/sys/unix"
)

// runIdle holds the connections open, growing them on each command of ctl
// until it says stop, then reads the last chat echoes.
func (g *gen) runIdle(ctl <-chan Command, events func(Event), res *Result) error {
	for ctl != nil {
		cmd, ok := <-ctl
		if !ok || cmd.N < 0 {
			break
		}
		if err := g.connect(cmd.N); err != nil {
			return err
		}
		res.Conns, res.Failed, res.Negotiated = g.open, g.failed, g.negotiated
		events(Event{Kind: "connected", N: g.open})
	}
	if g.cfg.Chat > 0 { // read the last echoes of the chat messages
		if err := g.pollFor(300 * time.Millisecond); err != nil {
			return err
		}
		res.Total = g.total
	}
	return nil
}

// buildChat frames the Chat messages every idle connection sends once open.
func (g *gen) buildChat() {
	if !g.ws {
		return
	}
	for i := 0; i < g.cfg.Chat; i++ {
		g.chat = append(g.chat, g.frameOf(PayloadSeed(200, int64(i)+1))...)
	}
}

// sendChat writes the chat frames on a connection just opened: a fresh
// socket takes a few hundred bytes, and the echoes wait in the kernel.
func (g *gen) sendChat(c *conn) {
	if len(g.chat) == 0 {
		return
	}
	if n, err := unix.Write(c.fd, g.chat); err != nil || n != len(g.chat) {
		g.lose(c)
	}
}
