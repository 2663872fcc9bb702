package websocket

import (
	"context"
	"encoding/binary"
	"sync"
)

// Ping sends a ping and waits for its pong. Pongs are read by Read, so
// another goroutine must be reading.
func (c *Conn) Ping(ctx context.Context) error {
	w := c.pingWaiters()
	w.mu.Lock()
	w.seq++
	id := w.seq
	pong := make(chan struct{})
	w.byID[id] = pong
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.byID, id)
		w.mu.Unlock()
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
	case <-c.closed.done():
		return ErrClosed
	}
}

// pingWaiters are the Pings waiting for their pongs, by the id their
// payload carries. A connection gets them with its first Ping: most never
// call it, and an idle connection should not pay for it.
type pingWaiters struct {
	mu   sync.Mutex
	byID map[uint64]chan struct{}
	seq  uint64
}

func (c *Conn) pingWaiters() *pingWaiters {
	if w := c.pings.Load(); w != nil {
		return w
	}
	c.pings.CompareAndSwap(nil, &pingWaiters{byID: make(map[uint64]chan struct{})})
	return c.pings.Load()
}

// deliverPong tells keepalive the peer is there and wakes the Ping waiting
// for this pong. A pong that answers no ping (RFC 6455 §5.5.3 allows
// unsolicited ones) wakes nobody.
func (c *Conn) deliverPong(payload []byte) {
	if c.rare != nil && c.rare.alive != nil {
		c.rare.alive.pong.Store(true)
	}
	w := c.pings.Load()
	if w == nil || len(payload) != 8 {
		return
	}
	id := binary.BigEndian.Uint64(payload)
	w.mu.Lock()
	if ch, ok := w.byID[id]; ok {
		close(ch)
		delete(w.byID, id)
	}
	w.mu.Unlock()
}
