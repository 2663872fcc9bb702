package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/klauspost/compress/flate"
)

const (
	// flushThreshold: buffered sends are written once this much is pending,
	// which bounds the memory a burst of SendText calls can pin.
	flushThreshold = 64 << 10
	// directWriteThreshold: a prepared frame at least this big is written
	// from its own slice rather than copied into the buffer (prepared.go);
	// with nothing pending before it, that is one write.
	directWriteThreshold = 4 << 10
	// directPayloadThreshold: a server payload at least this big is written
	// from the caller's slice, its header beside it in a writev, rather than
	// copied behind its header into the buffer. Below it the copy wins: the
	// kernel takes a header and a 64 KiB payload in one writev at far more
	// cost than the same bytes in one write (bench's echo, 64 KiB, 100
	// connections: 63-68 µs of server CPU per message against 42-46 µs
	// with the copy, which itself costs 2.4 µs; at 16 KiB, the same).
	// Above it, copying a payload of a MiB or more would cost more than it
	// saves, and the buffer would outgrow its pool.
	directPayloadThreshold = 128 << 10
	// fragmentSize is the payload of each frame a Writer emits.
	fragmentSize = 32 << 10
)

// SendText queues a text message. It is written by the next Flush, or
// earlier when the queued messages grow past 64 KiB. p must be valid UTF-8;
// it is copied (or written) before SendText returns.
func (c *Conn) SendText(p []byte) error { return c.send(nil, opText, p, false) }

// SendBinary queues a binary message, as SendText does.
func (c *Conn) SendBinary(p []byte) error { return c.send(nil, opBinary, p, false) }

// Flush writes the queued messages, in one write when they fit. It waits at
// most the WriteTimeout option.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	return c.flushLocked(nil)
}

// TryFlush writes what of the queued messages the connection takes now,
// without waiting, and reports whether that was all of it. What is left
// stays queued, in order, for the next Flush or TryFlush. It is for
// fan-out: a publisher that sends to many connections flushes each with
// TryFlush, and leaves the ones that report false (a peer that reads
// slowly, or another write under way) to a goroutine that calls Flush, so
// that no subscriber holds up the others. Over TLS and HTTP/2, whose writes
// cannot be tried without waiting, it writes nothing and reports false
// unless nothing was queued.
func (c *Conn) TryFlush() (bool, error) {
	if !c.wmu.TryLock() {
		return false, nil // a write is under way
	}
	defer c.wmu.Unlock()
	if c.werr != nil {
		return false, c.werr
	}
	if c.wbuf == nil || len(*c.wbuf) == 0 {
		return true, c.flushLocked(nil) // gives an empty buffer back
	}
	if c.rb.raw == nil {
		return false, nil
	}
	v := getWriteVec()
	n := v.writeNow(c.rb.raw, *c.wbuf, nil)
	putWriteVec(v)
	c.bytesOut.Add(uint64(n))
	left := copy(*c.wbuf, (*c.wbuf)[n:])
	*c.wbuf = (*c.wbuf)[:left]
	if left > 0 {
		return false, nil
	}
	putWriteBuffer(c.wbuf)
	c.wbuf = nil
	return true, nil
}

// Write sends a whole message and flushes it, with whatever was queued
// before it. When ctx ends before the write does, the connection is closed
// (a frame may have been cut) and ctx's error returned.
func (c *Conn) Write(ctx context.Context, typ MessageType, p []byte) error {
	if typ != MessageText && typ != MessageBinary {
		return fmt.Errorf("websocket: cannot write a message of type %v", typ)
	}
	return c.send(ctx, opcode(typ), p, true)
}

func (c *Conn) send(ctx context.Context, op opcode, p []byte, flush bool) error {
	if err := c.lockMessage(ctx); err != nil {
		return err
	}
	var rsv byte
	compressed := c.deflate.wants(op, len(p))
	if compressed {
		// Compress outside wmu, so pongs and closes need not wait for it.
		p, rsv = c.deflate.compress(p), bitRSV1
	}
	c.wmu.Lock()
	err := c.writeFrameLocked(ctx, true, op, rsv, p, flush)
	c.wmu.Unlock()
	if compressed {
		c.deflate.releaseOut()
	}
	c.msgSem.unlock()
	return err
}

// lockMessage takes msgSem, waiting at most until ctx ends or, without a
// ctx, the WriteTimeout.
func (c *Conn) lockMessage(ctx context.Context) error {
	if ctx != nil {
		return c.lockSem(ctx, &c.msgSem)
	}
	wake := c.msgSem.tryLockOrWait()
	if wake == nil {
		return nil
	}
	var timeout <-chan time.Time
	if c.cfg.writeTimeout > 0 {
		t := time.NewTimer(c.cfg.writeTimeout)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-wake:
		case <-timeout:
			return fmt.Errorf("websocket: another message's Writer held the connection for %v", c.cfg.writeTimeout)
		case <-c.closed.done():
			return ErrClosed
		}
		if wake = c.msgSem.tryLockOrWait(); wake == nil {
			return nil
		}
	}
}

// writeFrameLocked queues one frame and writes it out when flush is set or
// the queue is large. The caller holds wmu.
func (c *Conn) writeFrameLocked(ctx context.Context, fin bool, op opcode, rsv byte, p []byte, flush bool) error {
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return fmt.Errorf("%w: the close frame was already sent", ErrClosed)
	}
	if c.wbuf == nil {
		c.wbuf = getWriteBuffer()
	}
	if fin && !op.isControl() {
		c.msgsOut.Add(1)
	}
	h := frameHeader{fin: fin, rsv: rsv, opcode: op, length: int64(len(p))}
	if c.client {
		// RFC 6455 §5.3: a fresh, unpredictable key per frame. math/rand/v2's
		// generator is seeded from the system's random source.
		h.masked, h.key = true, rand.Uint32()
	}
	*c.wbuf = appendFrameHeader(*c.wbuf, h)
	switch {
	case !c.client && len(p) >= directPayloadThreshold:
		return c.writeLocked(ctx, *c.wbuf, p)
	case c.client && len(*c.wbuf)+len(p) > flushThreshold:
		// Mask a large payload chunk by chunk through the buffer, so the
		// caller's slice is never modified and the buffer stays bounded.
		key := h.key
		for len(p) > 0 {
			n := min(len(p), flushThreshold-len(*c.wbuf))
			if n <= 0 {
				if err := c.flushLocked(ctx); err != nil {
					return err
				}
				c.wbuf = getWriteBuffer()
				continue
			}
			start := len(*c.wbuf)
			*c.wbuf = append(*c.wbuf, p[:n]...)
			key = maskBytes(key, (*c.wbuf)[start:])
			p = p[n:]
		}
	default:
		start := len(*c.wbuf)
		*c.wbuf = append(*c.wbuf, p...)
		if c.client {
			maskBytes(h.key, (*c.wbuf)[start:])
		}
	}
	if flush || len(*c.wbuf) >= flushThreshold {
		return c.flushLocked(ctx)
	}
	return nil
}

// flushLocked writes the queue. The caller holds wmu.
func (c *Conn) flushLocked(ctx context.Context) error {
	if c.wbuf == nil {
		return nil
	}
	if len(*c.wbuf) == 0 {
		putWriteBuffer(c.wbuf)
		c.wbuf = nil
		return nil
	}
	return c.writeLocked(ctx, *c.wbuf, nil)
}

// writeLocked writes head and then tail (which may be nil) to the transport
// and releases the queue. A failed write is sticky and closes the
// connection: the peer may have received part of a frame.
func (c *Conn) writeLocked(ctx context.Context, head, tail []byte) error {
	// ctx bounds this write and nothing after it (deadline.go).
	if c.isOwnCtx(ctx) {
		ctx = nil
	}
	var n int64
	var err error
	v := getWriteVec()
	if ctx == nil || ctx.Err() == nil {
		// What the socket takes at once needs no deadline: only a write
		// that would wait arms one. rb.raw is the socket's RawConn, set
		// before the Conn is shared and never changed.
		n = v.writeNow(c.rb.raw, head, tail)
		head, tail = skipBytes(head, tail, n)
	}
	if len(head)+len(tail) > 0 || (ctx != nil && ctx.Err() != nil) {
		var k int64
		k, err = c.writeWaiting(ctx, v, head, tail)
		n += k
	}
	putWriteVec(v)
	c.bytesOut.Add(uint64(n))
	putWriteBuffer(c.wbuf)
	c.wbuf = nil
	if err != nil {
		switch {
		case ctx != nil && contextEnded(ctx) != nil && (isTimeout(err) || err == ctx.Err()):
			err = contextEnded(ctx)
		case c.isClosed():
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		case isTimeout(err):
			err = fmt.Errorf("websocket: write timed out: %w", err)
		}
		c.werr = err
		c.CloseNow()
	}
	return err
}

// contextEnded returns ctx's error, or context.DeadlineExceeded once ctx's
// deadline has passed: the transport's deadline, set from ctx's, can fire
// before ctx's own timer does, and the write must still report ctx's end.
func contextEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// writeWaiting writes head and then tail through the transport (with v's
// writev when both are there), waiting at most until ctx's deadline or the
// WriteTimeout, and interrupted when ctx ends.
func (c *Conn) writeWaiting(ctx context.Context, v *writeVec, head, tail []byte) (int64, error) {
	var deadline time.Time
	if ctx != nil {
		deadline, _ = ctx.Deadline()
	}
	if deadline.IsZero() && c.cfg.writeTimeout > 0 {
		deadline = time.Now().Add(c.cfg.writeTimeout)
	}
	if c.writeCtx == nil && ctx != nil && ctx.Done() != nil {
		c.writeCtx = &deadlineWatcher{set: c.t.SetWriteDeadline}
	}
	if w := c.writeCtx; w != nil {
		w.begin(ctx)
		defer w.end()
	}
	c.t.SetWriteDeadline(deadline)
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	switch {
	case len(tail) == 0:
		k, err := c.t.Write(head)
		return int64(k), err
	case len(head) == 0:
		k, err := c.t.Write(tail)
		return int64(k), err
	}
	return v.writeTo(c.t, head, tail)
}

// writeControl writes a ping or pong at once, between the frames of a
// message if one is being written.
func (c *Conn) writeControl(op opcode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil // RFC 6455 §5.5.1: nothing follows a close frame
	}
	return c.writeFrameLocked(nil, true, op, 0, payload, true)
}

// writeClose sends a close frame once; later calls do nothing. Queued
// messages go out before it.
func (c *Conn) writeClose(code StatusCode, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	var buf [maxControlPayload]byte
	payload := buf[:0]
	if code != StatusNoStatusRcvd {
		payload = append(payload, byte(code>>8), byte(code))
		payload = append(payload, truncateReason(reason)...)
	}
	// Claimed before the write: the peer's answer may be read by another
	// goroutine before the write returns.
	first := c.closedBy.CompareAndSwap(0, uint32(ClosedByLocal))
	err := c.writeFrameLocked(nil, true, opClose, 0, payload, true)
	c.closeSent = true
	switch {
	case err == nil:
		c.closeSentCode.Store(int32(code))
	case first:
		// Nothing went out: the closing handshake is not ours. A peer's
		// close frame that came meanwhile could not claim it (recordPeerClose
		// marks closeRcvd before it tries), so it is given back here.
		by := ClosedByNone
		if c.peerClosed() {
			by = ClosedByPeer
		}
		c.closedBy.Store(uint32(by))
	}
	return err
}

// Writer returns a writer for one message sent in fragments: each Write
// that fills 32 KiB sends a frame, and Close sends the final frame. Other
// messages wait until Close; pings and pongs may go between the fragments.
func (c *Conn) Writer(ctx context.Context, typ MessageType) (io.WriteCloser, error) {
	if typ != MessageText && typ != MessageBinary {
		return nil, fmt.Errorf("websocket: cannot write a message of type %v", typ)
	}
	if err := c.lockMessage(ctx); err != nil {
		return nil, err
	}
	w := &messageWriter{c: c, ctx: ctx, op: opcode(typ)}
	if c.deflate.wants(w.op, math.MaxInt) {
		c.deflate.takeOut()
		w.fw, w.rsv = c.deflate.startMessage(-1), bitRSV1
	}
	return w, nil
}

type messageWriter struct {
	c      *Conn
	ctx    context.Context
	op     opcode // of the next frame: the message type, then continuation
	rsv    byte   // of the next frame: RSV1 on the first of a compressed message
	buf    *[]byte
	fw     *flate.Writer // compressing into c.deflate.out, when compressing
	closed bool
}

var errWriterClosed = errors.New("websocket: write to a closed message writer")

func (w *messageWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	if w.fw != nil {
		return w.writeCompressed(p)
	}
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			if len(p) >= fragmentSize {
				// Big writes become frames without a copy.
				if err := w.frame(false, p); err != nil {
					return n - len(p), err
				}
				p = nil
				break
			}
			w.buf = getWriteBuffer()
		}
		k := min(len(p), fragmentSize-len(*w.buf))
		*w.buf = append(*w.buf, p[:k]...)
		p = p[k:]
		if len(*w.buf) == fragmentSize {
			if err := w.frame(false, *w.buf); err != nil {
				return n - len(p), err
			}
			(*w.buf) = (*w.buf)[:0]
		}
	}
	return n, nil
}

// writeCompressed feeds the compressor and sends what it produced in
// fragments, keeping back the last four bytes, which may be the tail that
// the final frame must not carry.
func (w *messageWriter) writeCompressed(p []byte) (int, error) {
	d := w.c.deflate
	if _, err := w.fw.Write(p); err != nil {
		return 0, err
	}
	d.remember(p)
	if out := d.out.b; len(out) >= fragmentSize+len(deflateTail) {
		if err := w.frame(false, out[:len(out)-len(deflateTail)]); err != nil {
			return 0, err
		}
		d.out.b = append(out[:0], out[len(out)-len(deflateTail):]...)
	}
	return len(p), nil
}

func (w *messageWriter) frame(fin bool, p []byte) error {
	w.c.wmu.Lock()
	err := w.c.writeFrameLocked(w.ctx, fin, w.op, w.rsv, p, true)
	w.c.wmu.Unlock()
	w.op, w.rsv = opContinuation, 0
	return err
}

// Close sends the final frame and lets other messages through.
func (w *messageWriter) Close() error {
	if w.closed {
		return errWriterClosed
	}
	w.closed = true
	var p []byte
	if w.buf != nil {
		p = *w.buf
	}
	if w.fw != nil {
		d := w.c.deflate
		w.fw.Flush()
		d.endMessage(w.fw)
		w.fw = nil
		p = bytes.TrimSuffix(d.out.b, deflateTail)
	}
	err := w.frame(true, p)
	w.c.deflate.releaseOut() // before msgSem: the next message may take it
	if w.buf != nil {
		putWriteBuffer(w.buf)
		w.buf = nil
	}
	w.c.msgSem.unlock()
	return err
}
