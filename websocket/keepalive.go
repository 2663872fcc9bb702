package websocket

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"
)

// Keepalive (Options.PingInterval) for many connections at the price of
// few: one goroutine per process keeps every connection's next keepalive
// event in a heap, ordered by time, and sleeps until the earliest. An idle
// connection with keepalive has no goroutine and no timer of its own: only
// its place in the heap. Sending a ping can block on a slow peer, so each
// ping is written by a goroutine that lives as long as that write; a
// missing pong fails the connection from the scheduler itself.
//
// The goroutine runs while some connection has keepalive on and ends when
// the last one closes.

// keepaliveState is a connection's part in the schedule. Everything but
// pong is guarded by keepalives.mu.
type keepaliveState struct {
	due      time.Time // when the scheduler next looks at the connection
	index    int       // in the heap; -1 when not in it
	sentAt   time.Time // of the last keepalive ping
	awaiting bool      // a keepalive ping was sent and no pong seen since
	pong     atomic.Bool
}

// keepaliveTimeoutReason is the reason of the close a missing pong causes.
const keepaliveTimeoutReason = "keepalive: no pong within the timeout"

type keepaliveScheduler struct {
	mu      sync.Mutex
	conns   keepaliveHeap
	running bool
	wake    chan struct{} // the earliest event moved, or the heap emptied
	due     []*Conn       // reused by run
}

var keepalives = &keepaliveScheduler{wake: make(chan struct{}, 1)}

// add schedules c's first ping one interval from now.
func (s *keepaliveScheduler) add(c *Conn) {
	now := time.Now()
	s.mu.Lock()
	c.rare.alive.sentAt = now // as if a ping had just been answered
	c.rare.alive.due = now.Add(c.cfg.pingInterval)
	heap.Push(&s.conns, c)
	first := c.rare.alive.index == 0
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.run()
	} else if first {
		s.poke()
	}
}

// remove takes c out of the schedule; the connection closed.
func (s *keepaliveScheduler) remove(c *Conn) {
	s.mu.Lock()
	if c.rare.alive.index >= 0 {
		heap.Remove(&s.conns, c.rare.alive.index)
	}
	empty := len(s.conns) == 0
	s.mu.Unlock()
	if empty {
		s.poke() // let the goroutine end now rather than at its next event
	}
}

func (s *keepaliveScheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *keepaliveScheduler) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		now := time.Now()
		for len(s.conns) > 0 && !s.conns[0].rare.alive.due.After(now) {
			c := heap.Pop(&s.conns).(*Conn)
			if c.isClosed() {
				continue // CloseNow's remove may have found it popped
			}
			if s.next(c, now) {
				heap.Push(&s.conns, c)
			} else {
				s.due = append(s.due, c)
			}
		}
		var wait time.Duration
		if len(s.conns) > 0 {
			wait = s.conns[0].rare.alive.due.Sub(now)
		}
		failed := s.due
		s.due = s.due[:0]
		s.mu.Unlock()

		for _, c := range failed {
			c.keepaliveFailed()
		}
		clear(failed)
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// next handles c's event at now: it sends a ping when one is due and sets
// the next event. It reports false when the pong is late: the connection
// is to be failed. The caller holds s.mu.
func (s *keepaliveScheduler) next(c *Conn, now time.Time) bool {
	a := c.rare.alive
	interval, timeout := c.cfg.pingInterval, c.cfg.pongTimeout
	if a.awaiting {
		if !a.pong.Load() {
			if !now.Before(a.sentAt.Add(timeout)) {
				return false
			}
			a.due = a.sentAt.Add(timeout)
			return true
		}
		a.awaiting = false
	}
	if now.Before(a.sentAt.Add(interval)) {
		a.due = a.sentAt.Add(interval)
		return true
	}
	a.sentAt, a.awaiting = now, true
	a.pong.Store(false)
	a.due = now.Add(min(interval, timeout))
	go c.writeControl(opPing, nil) // a failed write closes the connection
	return true
}

// keepaliveFailed fails a connection whose pong did not come: the peer is
// told 1011 if it still reads (the write is bounded by the write timeout
// and does not hold up the scheduler), and the reader sees 1006, since no
// close frame came back.
func (c *Conn) keepaliveFailed() {
	c.rare.closeCause.CompareAndSwap(nil, &CloseError{Code: StatusAbnormalClosure, Reason: keepaliveTimeoutReason})
	// A dead peer does not take the close frame: give it a second at most.
	stop := time.AfterFunc(min(time.Second, c.cfg.closeTimeout), func() { c.CloseNow() })
	go func() {
		c.writeClose(StatusInternalError, keepaliveTimeoutReason)
		c.CloseNow()
		stop.Stop()
	}()
}

// keepaliveHeap orders connections by their next keepalive event.
type keepaliveHeap []*Conn

func (h keepaliveHeap) Len() int           { return len(h) }
func (h keepaliveHeap) Less(i, j int) bool { return h[i].rare.alive.due.Before(h[j].rare.alive.due) }
func (h keepaliveHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].rare.alive.index = i
	h[j].rare.alive.index = j
}
func (h *keepaliveHeap) Push(x any) {
	c := x.(*Conn)
	c.rare.alive.index = len(*h)
	*h = append(*h, c)
}
func (h *keepaliveHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	c.rare.alive.index = -1
	*h = old[:len(old)-1]
	return c
}
