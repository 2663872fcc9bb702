package hub

import (
	"encoding/json"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// push queues a message shared with other sessions (a publication or a
// presence event), counted against the queue's bounds. It never blocks. It
// reports false when the session no longer takes messages; when this one
// would overflow the queue, the session is closed with CloseSlowConsumer.
// A fan-out passes starts, which starts the writing of a session that was
// idle along with others (writers.go); nil starts it at once.
func (s *session) push(pm *websocket.PreparedMessage, n int, starts *writerStarts) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.queued+n > s.h.opts.QueueBytes || s.queuedMsgs+1 > s.h.opts.QueueMessages {
		s.overflowLocked()
		return false
	}
	s.queued += n
	s.queuedMsgs++
	s.h.queuedBytes.Add(int64(n))
	s.h.queuedMsgs.Add(1)
	s.enqueueLocked(outgoing{pm: pm, n: n, counted: true}, starts)
	return true
}

// uncountLocked takes n bytes in msgs counted messages off the queue's
// bounds and the hub's totals, once they are written or dropped.
func (s *session) uncountLocked(n, msgs int) {
	if msgs == 0 {
		return
	}
	s.queued -= n
	s.queuedMsgs -= msgs
	s.h.queuedBytes.Add(-int64(n))
	s.h.queuedMsgs.Add(-int64(msgs))
}

// dropQueueLocked drops what waits in the queue (the batch being written,
// if any, is uncounted by the writer when it is done).
func (s *session) dropQueueLocked() {
	n, msgs := 0, 0
	for i := range s.queue {
		if s.queue[i].counted {
			n += s.queue[i].n
			msgs++
		}
	}
	s.uncountLocked(n, msgs)
	s.queue = nil
}

// deliver implements subscriber.
func (s *session) deliver(_ *Event, msg []byte, pm *websocket.PreparedMessage, starts *writerStarts) bool {
	return s.push(pm, len(msg), starts)
}

// sendReply queues the reply to a command. Replies are not counted against
// the queue's bounds: each answers a command the client sent and waits for,
// and MaxRecover bounds the largest.
func (s *session) sendReply(id uint64, result any, e *Error) {
	msg, err := json.Marshal(reply{ID: id, Result: result, Error: e})
	if err != nil {
		msg, _ = json.Marshal(reply{ID: id, Error: &Error{Code: codeInternalError, Message: "internal error"}})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.enqueueLocked(outgoing{data: msg, n: len(msg)}, nil)
	}
}

// enqueueLocked queues o and, when nothing is being written, starts the
// writing: through starts, or on a goroutine of its own when starts is nil.
func (s *session) enqueueLocked(o outgoing, starts *writerStarts) {
	s.queue = append(s.queue, o)
	if !s.writing {
		s.writing = true
		if starts != nil {
			starts.add(s)
		} else {
			go s.writeFn() // a func value made once: go s.write() would allocate a closure each time
		}
	}
}

// write writes the queue in batches, one flush (one syscall when it fits)
// per batch, until the queue is empty.
func (s *session) write() { s.writeFrom(nil, 0) }

// writeFrom writes batch from its sent-th message on (the messages before
// it are queued in the connection already), then the queue, as write does.
func (s *session) writeFrom(batch []outgoing, sent int) {
	for {
		if batch == nil {
			var ok bool
			if batch, ok = s.nextBatch(false); !ok {
				return
			}
			sent = 0
		}
		err := s.sendBatch(batch[sent:])
		if !s.batchWritten(batch, err) {
			return
		}
		batch = nil
	}
}

// tryWrite writes what is queued from a fan-out's goroutine, for many
// sessions in turn (writers.go): with TrySendPrepared and TryFlush, so that
// it never waits for this session's client. What they leave (a client that
// reads slowly, a write under way, a reply, a large message) goes on, in
// order, on a writer goroutine of the session's own, as does whatever was
// queued meanwhile.
func (s *session) tryWrite() {
	batch, ok := s.nextBatch(true)
	if !ok {
		return
	}
	sent := 0
	for ; sent < len(batch) && batch[sent].pm != nil; sent++ {
		queued, err := s.c.TrySendPrepared(batch[sent].pm)
		if err != nil {
			s.batchWritten(batch, err)
			return
		}
		if !queued {
			break
		}
	}
	done, err := s.c.TryFlush()
	if err != nil {
		s.batchWritten(batch, err)
		return
	}
	if sent < len(batch) || !done {
		go s.writeFrom(batch, sent)
		return
	}
	if !s.batchWritten(batch, nil) {
		return
	}
	if batch, ok = s.nextBatch(true); ok { // queued while this one was written
		go s.writeFrom(batch, 0)
	}
}

// nextBatch takes the next batch off the queue. When there is none it ends
// the writing and reports false, first closing the connection when a
// disconnect asked for that once the queue was written: at once, or, from
// a fan-out's goroutine (fanOut), on a goroutine of its own, since a close
// waits for the client.
func (s *session) nextBatch(fanOut bool) ([]outgoing, bool) {
	s.mu.Lock()
	batch := s.queue
	if len(batch) == 0 || s.closed && s.closeCode == 0 {
		s.writing = false
		code, why := s.closeCode, s.closeWhy
		s.closeCode = 0
		s.mu.Unlock()
		switch {
		case code == 0:
		case fanOut:
			go s.closeConn(code, why)
		default:
			s.closeConn(code, why)
		}
		return nil, false
	}
	// At most maxBatch bytes per flush: the write lock is released
	// between batches, so that a close (of a slow consumer, at
	// shutdown) waits for one batch at most, not the whole queue.
	n, size := 0, 0
	for n < len(batch) && (n == 0 || size+batch[n].n <= maxBatch) {
		size += batch[n].n
		n++
	}
	rest := batch[n:]
	batch = batch[:n]
	s.queue = append(s.spare[:0], rest...)
	s.mu.Unlock()
	return batch, true
}

// sendBatch queues batch in the connection and flushes it.
func (s *session) sendBatch(batch []outgoing) error {
	for i := range batch {
		o := &batch[i]
		var err error
		if o.pm != nil {
			err = s.c.SendPrepared(o.pm)
		} else {
			err = s.c.SendText(o.data)
		}
		if err != nil {
			return err
		}
	}
	return s.c.Flush()
}

// batchWritten ends the writing of batch: its messages leave the queue's
// count, and after err the session is closed and the writing ends, which
// it reports with false.
func (s *session) batchWritten(batch []outgoing, err error) bool {
	s.mu.Lock()
	written, msgs := 0, 0
	for i := range batch {
		if batch[i].counted {
			written += batch[i].n
			msgs++
		}
	}
	s.uncountLocked(written, msgs)
	clear(batch)
	s.spare = batch[:0]
	if err != nil {
		s.closed, s.writing = true, false
		s.dropQueueLocked()
		s.mu.Unlock()
		s.c.CloseNow() // a write failed: the reader ends too
		return false
	}
	s.mu.Unlock()
	return true
}

// maxBatch is the most bytes the writer sends in one flush.
const maxBatch = 64 << 10

// overflow closes the session as a slow consumer.
func (s *session) overflow() {
	s.mu.Lock()
	s.overflowLocked()
	s.mu.Unlock()
}

func (s *session) overflowLocked() {
	if s.closed {
		return
	}
	s.h.slowConsumers.Add(1)
	s.h.log.Info("hub: slow consumer closed", "client", s.info.Client, "queued_bytes", s.queued, "queued_messages", s.queuedMsgs)
	s.closed = true
	s.dropQueueLocked()
	// The writer may be stuck on the very peer that does not read: close
	// from a goroutine of its own, and do not wait long for the close frame
	// to get out.
	go s.closeConn(CloseSlowConsumer, reasonSlowConsumer)
}

// disconnect queues the disconnect push and then closes the connection with
// code, once what is queued before it is written.
func (s *session) disconnect(code websocket.StatusCode, reason string) {
	msg := disconnectMessage(code, reason)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.enqueueLocked(outgoing{data: msg, n: len(msg)}, nil)
	s.closed, s.closeCode, s.closeWhy = true, code, reason
}

// closeGrace bounds how long closing a session waits for its close frame to
// be written before it drops the connection. A slow consumer's frame goes out
// after the batch its writer is stuck in, once the client reads again: a
// client that is slow, not dead, then learns why it was closed (4008). The
// queue is dropped at once, so the wait holds a socket and two goroutines,
// no queued data.
const closeGrace = 5 * time.Second

func (s *session) closeConn(code websocket.StatusCode, reason string) {
	t := time.AfterFunc(closeGrace, func() { s.c.CloseNow() })
	s.c.Close(code, reason)
	t.Stop()
}

// tokenBucket limits a session's publishes. The zero value allows all.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *tokenBucket) allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
