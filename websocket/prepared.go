package websocket

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// PreparedMessage is a data message framed once and sent to many
// connections, as when a room's message fans out to its subscribers.
//
// A server connection writes the frame built by NewPreparedMessage as it
// is: the payload is neither copied nor framed again per connection (a
// frame under 4 KiB is copied into the connection's queue, as SendText
// copies a small message; a larger one is written from the shared frame).
// When the connection compresses the message and keeps no context between
// messages, the compressed frame is built once per compression level and
// encoder, on first use, and shared the same way; with context takeover
// each connection's history differs, so the message is compressed per
// connection. A client connection must mask every frame with a fresh key
// (RFC 6455 §5.3), so it copies and masks the payload (or the shared
// compressed payload) as any other write does.
//
// A PreparedMessage never changes once made, and any number of goroutines
// may send it at once.
type PreparedMessage struct {
	typ   MessageType
	frame []byte // the unmasked, uncompressed frame: header, then data
	hlen  int    // the header's length in frame

	mu         sync.Mutex                       // serialises adding to compressed
	compressed atomic.Pointer[[]*preparedFrame] // read without the lock
}

// preparedFrame is the message compressed for one parameter set.
type preparedFrame struct {
	level, bits int // CompressionOptions.Level; the encoder's window (see encoderWindow)
	once        sync.Once
	frame       []byte // unmasked, RSV1 set: header, then the compressed payload
	hlen        int
}

// NewPreparedMessage prepares a message of type typ. data is copied: the
// caller may reuse it at once. Text must be valid UTF-8; as with SendText,
// it is not checked.
func NewPreparedMessage(typ MessageType, data []byte) *PreparedMessage {
	h := frameHeader{fin: true, opcode: opcode(typ), length: int64(len(data))}
	frame := appendFrameHeader(make([]byte, 0, maxHeaderSize+len(data)), h)
	hlen := len(frame)
	return &PreparedMessage{typ: typ, frame: append(frame, data...), hlen: hlen}
}

func (pm *PreparedMessage) data() []byte { return pm.frame[pm.hlen:] }

// SendPrepared queues pm as SendText queues a message: it is written by the
// next Flush, or at once when it is 4 KiB or more or the queue is large.
func (c *Conn) SendPrepared(pm *PreparedMessage) error { return c.sendPrepared(nil, pm, false) }

// WritePrepared sends pm and flushes it, with whatever was queued before
// it, as Write does.
func (c *Conn) WritePrepared(ctx context.Context, pm *PreparedMessage) error {
	return c.sendPrepared(ctx, pm, true)
}

func (c *Conn) sendPrepared(ctx context.Context, pm *PreparedMessage, flush bool) error {
	op, frame, payload, rsv, err := c.preparedFrame(pm)
	if err != nil {
		return err
	}
	if frame == nil {
		return c.send(ctx, op, payload, flush) // compressed against this connection's history
	}
	if err := c.lockMessage(ctx); err != nil {
		return err
	}
	c.wmu.Lock()
	err = c.writePreparedLocked(ctx, op, frame, payload, rsv, flush)
	c.wmu.Unlock()
	c.msgSem.unlock()
	return err
}

// TrySendPrepared queues pm as SendPrepared does, but only when that takes
// neither a wait nor a write; otherwise it queues nothing and reports
// false: when another send or write is under way, when pm's frame is 4 KiB
// or more (SendPrepared writes those at once), when the queue would grow
// past 64 KiB, and when pm must be compressed against this connection's
// own history (context takeover). With TryFlush it lets one goroutine send
// to many connections with none of them holding it up: a connection it
// reports false for is left to a goroutine that calls SendPrepared and
// Flush, which keeps the order.
func (c *Conn) TrySendPrepared(pm *PreparedMessage) (bool, error) {
	op, frame, payload, rsv, err := c.preparedFrame(pm)
	if err != nil || frame == nil {
		return false, err
	}
	size := len(frame)
	if c.client {
		size = maxHeaderSize + len(payload) // masked on the way into the buffer
	}
	if size >= directWriteThreshold || !c.msgSem.tryLock() {
		return false, nil
	}
	defer c.msgSem.unlock()
	if !c.wmu.TryLock() {
		return false, nil
	}
	defer c.wmu.Unlock()
	if c.wbuf != nil && len(*c.wbuf)+size >= flushThreshold {
		return false, nil
	}
	if err := c.writePreparedLocked(nil, op, frame, payload, rsv, false); err != nil {
		return false, err
	}
	return true, nil
}

// preparedFrame is what c sends for pm: its frame, unmasked (a server's),
// and its payload, compressed when c compresses it. frame is nil when pm
// must be compressed against c's own history: c then sends payload as a
// message of its own.
func (c *Conn) preparedFrame(pm *PreparedMessage) (op opcode, frame, payload []byte, rsv byte, err error) {
	if pm.typ != MessageText && pm.typ != MessageBinary {
		return 0, nil, nil, 0, fmt.Errorf("websocket: cannot write a message of type %v", pm.typ)
	}
	op, payload = opcode(pm.typ), pm.data()
	if c.deflate.wants(op, len(payload)) {
		if !c.deflate.params.sendNoTakeover {
			return op, nil, payload, 0, nil
		}
		f := pm.compressedFor(c.deflate.level, c.deflate.params.sendWindowBits)
		return op, f.frame, f.frame[f.hlen:], bitRSV1, nil
	}
	return op, pm.frame, payload, 0, nil
}

// writePreparedLocked queues, or writes, a prepared frame: a client masks
// payload into a frame of its own, a server sends frame as it is. The
// caller holds msgSem and wmu.
func (c *Conn) writePreparedLocked(ctx context.Context, op opcode, frame, payload []byte, rsv byte, flush bool) error {
	if c.client {
		return c.writeFrameLocked(ctx, true, op, rsv, payload, flush)
	}
	return c.writeFramedLocked(ctx, frame, flush)
}

// writeFramedLocked queues a whole unmasked frame, or writes it at once with
// the queue when it is large, without copying it. The caller holds wmu.
func (c *Conn) writeFramedLocked(ctx context.Context, frame []byte, flush bool) error {
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return fmt.Errorf("%w: the close frame was already sent", ErrClosed)
	}
	if c.wbuf == nil {
		c.wbuf = getWriteBuffer()
	}
	c.msgsOut.Add(1)
	if len(frame) >= directWriteThreshold {
		return c.writeLocked(ctx, *c.wbuf, frame)
	}
	*c.wbuf = append(*c.wbuf, frame...)
	if flush || len(*c.wbuf) >= flushThreshold {
		return c.flushLocked(ctx)
	}
	return nil
}

// compressedFor returns the message compressed, without context, at level
// under a send window of windowBits, compressing it on first use. Windows
// that get the same encoder (every window the message fits in) share one
// frame.
func (pm *PreparedMessage) compressedFor(level, windowBits int) *preparedFrame {
	bits, _ := encoderWindow(windowBits, len(pm.data()), nil)
	f := pm.findCompressed(level, bits)
	if f == nil {
		pm.mu.Lock()
		if f = pm.findCompressed(level, bits); f == nil {
			f = &preparedFrame{level: level, bits: bits}
			var list []*preparedFrame
			if old := pm.compressed.Load(); old != nil {
				list = slices.Clone(*old)
			}
			list = append(list, f)
			pm.compressed.Store(&list)
		}
		pm.mu.Unlock()
	}
	f.once.Do(func() { f.build(pm.typ, pm.data()) })
	return f
}

func (pm *PreparedMessage) findCompressed(level, bits int) *preparedFrame {
	if list := pm.compressed.Load(); list != nil {
		for _, f := range *list {
			if f.level == level && f.bits == bits {
				return f
			}
		}
	}
	return nil
}

// build compresses data after room for the longest header, then puts the
// header right before the payload, so the frame takes no second copy.
func (f *preparedFrame) build(typ MessageType, data []byte) {
	out := sliceWriter{b: make([]byte, maxHeaderSize, maxHeaderSize+len(data)/2+64)}
	fw := getFlateWriter(f.level, f.bits, &out, nil)
	fw.Write(data)
	fw.Flush()
	putFlateWriter(f.level, f.bits, fw)
	payload := bytes.TrimSuffix(out.b[maxHeaderSize:], deflateTail)
	h := frameHeader{fin: true, rsv: bitRSV1, opcode: opcode(typ), length: int64(len(payload))}
	var hdr [maxHeaderSize]byte
	head := appendFrameHeader(hdr[:0], h)
	start := maxHeaderSize - len(head)
	copy(out.b[start:], head)
	f.frame, f.hlen = out.b[start:maxHeaderSize+len(payload)], len(head)
}
