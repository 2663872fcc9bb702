package main

import (
	"sync"

	"github.com/duplexws/duplex/websocket"
)

// maxQueued bounds a subscriber's queue: a subscriber this far behind is
// too slow for the room and is closed, so that it never holds up the
// publisher or grows without bound.
const maxQueued = 256

// subscriber is one connection of the broadcast room. A publisher sends
// each message to every subscriber, then flushes them one by one; as the
// echo Flushes only when no further message has arrived already
// (MessageReady), the publisher stops flushing when one has, and reads and
// sends it first: every subscriber not yet flushed gets both in one write.
// A message reaches a subscriber in one of two ways:
//
//   - nothing is being written to the subscriber: the publisher takes it
//     over (writing, owner), queues the message in the connection
//     (SendPrepared) and Flushes it at the end of its batch; no goroutine is
//     woken for it. With one message in flight, every delivery goes so.
//   - another publisher's batch or the writer goroutine is writing to it:
//     the message is queued here, and whoever finishes that write hands the
//     queue to the subscriber's writer goroutine, which sends all it finds
//     queued and Flushes once. A publisher never drains another's backlog.
//
// The publisher flushes with TryFlush, which never waits: what a full
// socket did not take (a subscriber that reads slowly) is left to the
// subscriber's writer goroutine, as a queue is.
type subscriber struct {
	c    *websocket.Conn
	wake chan struct{} // tells the writer goroutine that queue is its to drain
	done chan struct{} // closed when the writer goroutine has ended

	mu      sync.Mutex
	queue   []*websocket.PreparedMessage
	writing bool   // a publisher's batch or the writer is writing to c
	owner   *batch // the publisher's batch that is, if any
	closed  bool   // the connection failed, was too slow or left

	sendErr error // the owner's first SendPrepared error, for its Flush
}

// batch is one publisher's subscribers sent to since its last flush.
type batch struct{ pending []*subscriber }

func newSubscriber(c *websocket.Conn) *subscriber {
	s := &subscriber{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.writer()
	return s
}

// send queues pm for the subscriber in b's batch, or in the subscriber's
// queue when someone else is writing to it; it never waits for another
// write to the subscriber.
func (s *subscriber) send(pm *websocket.PreparedMessage, b *batch) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return
	case s.writing && s.owner == b: // b took it over earlier in this batch
		s.mu.Unlock()
	case s.writing:
		if len(s.queue) >= maxQueued {
			s.closed = true
			s.mu.Unlock()
			_ = s.c.CloseNow()
			return
		}
		s.queue = append(s.queue, pm)
		s.mu.Unlock()
		return
	default:
		s.writing, s.owner = true, b
		s.mu.Unlock()
		b.pending = append(b.pending, s)
	}
	if err := s.c.SendPrepared(pm); err != nil && s.sendErr == nil {
		s.sendErr = err
	}
}

// flush writes what b sent to each of its subscribers and gives them up.
func (b *batch) flush() { b.flushUnless(func() bool { return false }) }

// minFlushes is how many subscribers flushUnless flushes at least before it
// lets more stop it, so that a publisher whose messages keep coming still
// writes them out.
const minFlushes = 256

// flushUnless is flush, but stops as soon as more says that a further
// message has arrived (MessageReady), once minFlushes are done: the
// publisher then reads and sends it first, so that every subscriber not yet
// flushed gets both in one write. It keeps the rest pending, in order.
func (b *batch) flushUnless(more func() bool) {
	i := 0
	for ; i < len(b.pending); i++ {
		if i >= minFlushes && more() {
			break
		}
		s := b.pending[i]
		err, left := s.sendErr, false
		if err == nil {
			var done bool
			done, err = s.c.TryFlush()
			left = !done
		}
		s.sendErr = nil
		s.wrote(err, left)
	}
	n := copy(b.pending, b.pending[i:])
	clear(b.pending[n:])
	b.pending = b.pending[:n]
}

// wrote ends a write: on error the subscriber is closed; else what was
// queued meanwhile, and what the write left unwritten (left), goes to the
// writer goroutine.
func (s *subscriber) wrote(err error, left bool) {
	s.mu.Lock()
	s.owner = nil
	if err != nil && !s.closed {
		s.closed = true
		_ = s.c.CloseNow()
	}
	if s.closed || len(s.queue) == 0 && !left {
		s.queue = s.queue[:0]
		s.writing = false
		s.mu.Unlock()
		return
	}
	// writing stays true: the writer owns the queue now. wake is empty (the
	// writer took the last hand-over before this write began) and leave
	// closes it under mu, so this send neither waits nor meets a closed
	// channel.
	s.wake <- struct{}{}
	s.mu.Unlock()
}

// writer drains the queue each time a write hands it over, until leave.
func (s *subscriber) writer() {
	defer close(s.done)
	var batch []*websocket.PreparedMessage
	for range s.wake {
		s.mu.Lock()
		batch, s.queue = s.queue, batch[:0]
		s.mu.Unlock()
		var err error
		for _, pm := range batch {
			if err = s.c.SendPrepared(pm); err != nil {
				break
			}
		}
		if err == nil {
			err = s.c.Flush()
		}
		clear(batch)
		s.wrote(err, false)
	}
}

// leave ends the writer goroutine once the subscriber has left the room
// (no send can start after that; a batch that holds it finds it closed).
func (s *subscriber) leave() {
	s.mu.Lock()
	s.closed = true
	close(s.wake)
	s.mu.Unlock()
	<-s.done
}
