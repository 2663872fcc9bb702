package websocket

import (
	"context"
	"encoding/binary"
)

// Ping sends a ping and waits for its pong. Pongs are read by Read, so
// another goroutine must be reading.
func (c *Conn) Ping(ctx context.Context) error {
	c.pingMu.Lock()
	if c.pings == nil {
		c.pings = make(map[uint64]chan struct{})
	}
	c.pingSeq++
	id := c.pingSeq
	pong := make(chan struct{})
	c.pings[id] = pong
	c.pingMu.Unlock()
	defer func() {
		c.pingMu.Lock()
		delete(c.pings, id)
		c.pingMu.Unlock()
	}()

	var payload [8]byte
	binary.BigEndian.PutUint64(payload[:], id)
	if err := c.writeControl(opPing, payload[:]); err != nil {
		return err
	}
	select {
	case <-pong:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return ErrClosed
	}
}

// deliverPong tells keepalive the peer is there and wakes the Ping waiting
// for this pong. A pong that answers no ping (RFC 6455 §5.5.3 allows
// unsolicited ones) wakes nobody.
func (c *Conn) deliverPong(payload []byte) {
	c.alive.pong.Store(true)
	if len(payload) != 8 {
		return
	}
	id := binary.BigEndian.Uint64(payload)
	c.pingMu.Lock()
	if ch, ok := c.pings[id]; ok {
		close(ch)
		delete(c.pings, id)
	}
	c.pingMu.Unlock()
}
