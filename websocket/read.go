package websocket

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// readState is where the reader stands in the frame stream.
type readState struct {
	// The data frame being read.
	remaining int64  // payload bytes not yet read
	key       uint32 // masking key, rotated to the next payload byte
	masked    bool
	fin       bool

	// The data message being read; Conn.msgsIn numbers it.
	inMessage  bool
	compressed bool   // permessage-deflate: the payload is inflated as it is read
	typ        opcode // opText or opBinary; a MessageType's value in a byte
	utf8       utf8Validator
	size       int64 // payload bytes of the message so far, against the read limit
	inflated   int64 // bytes inflated so far, against the read limit
}

// msgType is the type of the data message being read.
func (s *readState) msgType() MessageType { return MessageType(s.typ) }

// Read reads the next whole message. Control frames that arrive before it
// are handled on the way: pings are answered, the peer's close frame is
// echoed and ends the connection.
//
// When the peer closes the connection Read returns a *CloseError; with code
// 1000 or 1001 it matches io.EOF, so a read loop can end quietly. When the
// peer breaks the protocol, Read sends the close frame the RFC requires
// (1002, 1007 for invalid UTF-8, 1009 over the read limit) and returns a
// *CloseError with Remote false.
//
// Cancelling ctx while Read waits for a message leaves the connection usable;
// cancelling it after part of the message has arrived closes the connection,
// since the rest could not be told apart from the next message.
func (c *Conn) Read(ctx context.Context) (Message, error) {
	if c.ev != nil {
		return Message{}, errEventsRead
	}
	return c.readWhole(ctx, nil)
}

// MessageReady reports whether the next message has already arrived whole,
// so that the next Read or ReadInto returns it without waiting. A loop that
// answers each message can Flush only when MessageReady is false: the
// answers to messages that arrived together then go out in one write, and
// no answer waits for a message that is still on its way. Call it from the
// goroutine that reads (with AcceptEvents, from OnMessage); it reads
// nothing itself.
func (c *Conn) MessageReady() bool {
	if c.inLoopCallback() {
		// The loop's worker, which holds the read side for good, is
		// running this OnMessage: what it has buffered is ours to look
		// at, and the messages in it are delivered before it reads more.
		return c.wholeMessageBuffered()
	}
	if !c.readSem.tryLock() {
		return false // a read is under way elsewhere
	}
	defer c.readSem.unlock()
	return c.wholeMessageBuffered()
}

// wholeMessageBuffered is MessageReady's look at the buffer; the caller
// holds the read side.
func (c *Conn) wholeMessageBuffered() bool {
	if c.readErr != nil || c.rs.inMessage {
		return false
	}
	// Walk the buffered frames: control frames are handled on the way by
	// the next read; a message is whole at its final frame.
	b := c.rb.bytes()
	for {
		h, hlen, ok, err := bufferedFrameHeader(b)
		if !ok || err != nil || h.length > int64(len(b)-hlen) {
			return false
		}
		b = b[hlen+int(h.length):]
		if !h.opcode.isControl() && h.fin {
			return true
		}
	}
}

// readWhole is Read and ReadInto: the message's data is appended to dst[:0].
func (c *Conn) readWhole(ctx context.Context, dst []byte) (Message, error) {
	if err := c.lockSem(ctx, &c.readSem); err != nil {
		return Message{}, err
	}
	defer c.readSem.unlock()
	if c.readErr != nil {
		return Message{}, c.readErr
	}
	defer c.t.endRead()
	if err := c.beginRead(ctx); err != nil {
		return Message{}, err
	}
	// Between messages, wait here rather than deeper down in readMessage:
	// a goroutine parked this shallow keeps the runtime's smallest stack
	// (2 KiB), which is most of what an idle connection costs.
	var err error
	if c.rb.buffered() == 0 && !c.rs.inMessage {
		err = c.rb.fill()
	}
	var msg Message
	if err == nil {
		msg, err = c.readMessage(dst)
	}
	if err = c.endRead(ctx, err); err != nil {
		return Message{}, err
	}
	c.rb.wantLarge(c.rs.size + maxHeaderSize)
	c.rb.releaseIdle()
	return msg, nil
}

// Reader returns the next message as a stream, for messages too large to
// hold at once. The read limit applies to it as to Read. Calling Read or
// Reader again discards what is left of the message.
func (c *Conn) Reader(ctx context.Context) (MessageType, io.Reader, error) {
	if c.ev != nil {
		return 0, nil, errEventsRead
	}
	if err := c.lockSem(ctx, &c.readSem); err != nil {
		return 0, nil, err
	}
	defer c.readSem.unlock()
	if c.readErr != nil {
		return 0, nil, c.readErr
	}
	defer c.t.endRead()
	if err := c.beginRead(ctx); err != nil {
		return 0, nil, err
	}
	err := c.skipMessage()
	if err == nil {
		err = c.nextFrame()
	}
	if err = c.endRead(ctx, err); err != nil {
		return 0, nil, err
	}
	return c.rs.msgType(), &messageReader{c: c, ctx: ctx, gen: c.msgsIn.Load()}, nil
}

// messageReader streams one message for Reader.
type messageReader struct {
	c   *Conn
	ctx context.Context
	gen uint64
}

var errStaleReader = errors.New("websocket: message reader used after the next message was read")

func (r *messageReader) Read(p []byte) (int, error) {
	c := r.c
	if err := c.lockSem(r.ctx, &c.readSem); err != nil {
		return 0, err
	}
	defer c.readSem.unlock()
	if c.msgsIn.Load() != r.gen {
		return 0, errStaleReader
	}
	if !c.rs.inMessage {
		return 0, io.EOF
	}
	if c.readErr != nil {
		return 0, c.readErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	defer c.t.endRead()
	if err := c.beginRead(r.ctx); err != nil {
		return 0, err
	}
	n, err := c.readData(p)
	if err = c.endRead(r.ctx, err); err != nil {
		return n, err
	}
	if !c.rs.inMessage {
		c.rb.releaseIdle()
		return n, io.EOF
	}
	return n, nil
}

// readData reads at most len(p) bytes of the current message's data,
// inflating a compressed message, and ends the message after its last byte.
func (c *Conn) readData(p []byte) (int, error) {
	if c.rs.compressed {
		return c.readInflated(p)
	}
	if err := c.advance(); err != nil || !c.rs.inMessage {
		return 0, err
	}
	n, err := c.readPayload(p)
	if err == nil && c.rs.fin {
		// Only a final frame is ended here, which needs no more input. The
		// next frame of a fragmented message is waited for by the next
		// read: a sender may hold it back until it hears an answer to what
		// it has sent so far, and these bytes must reach the caller first.
		err = c.advance()
	}
	return n, err
}

// endRead turns the raw error of a read into what the caller sees, and
// fails or closes the connection as the error requires.
func (c *Conn) endRead(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if isTimeout(err) && ctx.Err() != nil {
		// ctx moved the read deadline. Between messages nothing is lost;
		// inside one, the rest could not be told from the next message.
		if c.rs.inMessage {
			c.readErr = &CloseError{Code: StatusAbnormalClosure, Reason: "read cancelled in the middle of a message", cause: ctx.Err()}
			c.CloseNow()
		}
		return ctx.Err()
	}
	var pe *protocolError
	var ce *CloseError
	switch {
	case errors.As(err, &pe):
		c.readErr = c.fail(pe.code, pe.reason)
	case errors.As(err, &ce):
		c.readErr = ce
	default:
		reason := "connection lost without a close frame"
		if c.isClosed() {
			reason = "connection closed"
		}
		if cause := c.closeCause(); cause != nil {
			reason = cause.Reason
		}
		c.readErr = &CloseError{Code: StatusAbnormalClosure, Reason: reason, cause: err}
		c.CloseNow()
	}
	return c.readErr
}

// readMessage reads the rest of the current message, if a Reader left one,
// then the next whole message, appending its data to dst[:0].
func (c *Conn) readMessage(dst []byte) (Message, error) {
	if err := c.skipMessage(); err != nil {
		return Message{}, err
	}
	if err := c.nextFrame(); err != nil {
		return Message{}, err
	}
	data, err := c.readRest(dst[:0])
	if err != nil {
		return Message{}, err
	}
	return Message{Type: c.rs.msgType(), Data: data}, nil
}

// readRest appends the rest of the current message's data to data. On an
// error it returns what it appended so far: the event loop, whose reads
// stop where the buffered input ends (errWouldBlock), goes on from there
// when more comes.
func (c *Conn) readRest(data []byte) ([]byte, error) {
	for c.rs.inMessage {
		if len(data) == cap(data) {
			// The first frame of an unfragmented message sizes the buffer
			// exactly; a compressed one is guessed at and grown. The read
			// limit bounds the growth.
			n := int(c.rs.remaining)
			if c.rs.compressed {
				n = max(2*n, len(data), 512)
			}
			data = slices.Grow(data, max(n, 1))
		}
		n, err := c.readData(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err != nil {
			return data, err
		}
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// skipMessage discards the rest of a message a Reader did not finish.
func (c *Conn) skipMessage() error {
	if !c.rs.inMessage {
		return nil
	}
	scratch := make([]byte, smallReadSize)
	for c.rs.inMessage {
		if _, err := c.readData(scratch); err != nil {
			return err
		}
	}
	return nil
}

// advance moves past finished frames of the current message: it reads
// continuation headers (handling control frames between them) until there
// is payload to read, and ends the message after its final frame.
func (c *Conn) advance() error {
	for c.rs.inMessage && c.rs.remaining == 0 {
		if c.rs.fin {
			c.rs.inMessage = false
			if c.rs.msgType() == MessageText && !c.rs.utf8.complete() {
				return &protocolError{code: StatusInvalidFramePayloadData, reason: "text message ends inside a UTF-8 sequence"}
			}
			return nil
		}
		if err := c.nextFrame(); err != nil {
			return err
		}
	}
	return nil
}

// readInflated reads the inflated data of a compressed message. The read
// limit applies to what comes out, so a small message that inflates to
// gigabytes fails with 1009 after at most the limit's worth of work.
func (c *Conn) readInflated(p []byte) (int, error) {
	d := c.deflate
	limit := c.readLimit.Load()
	if limit >= 0 && int64(len(p)) > limit-c.rs.inflated {
		p = p[:limit-c.rs.inflated+1]
	}
	n, err := d.fr.Read(p)
	if n > 0 {
		c.rs.inflated += int64(n)
		if limit >= 0 && c.rs.inflated > limit {
			return n, &protocolError{code: StatusMessageTooBig, reason: "message inflates beyond the read limit of " + strconv.FormatInt(limit, 10) + " bytes"}
		}
		if c.rs.msgType() == MessageText && !c.rs.utf8.write(p[:n]) {
			return n, &protocolError{code: StatusInvalidFramePayloadData, reason: "text message is not valid UTF-8"}
		}
		if !d.params.recvNoTakeover {
			d.recvHist = appendHistory(d.recvHist, p[:n], 1<<d.params.recvWindowBits)
		}
	}
	switch {
	case err == io.EOF:
		// A sender may end the stream with a final block before the end of
		// the frames; what follows it carries nothing.
		if err := c.discardRaw(); err != nil {
			return n, err
		}
		d.finishInflate()
		c.rs.inMessage = false
		if c.rs.msgType() == MessageText && !c.rs.utf8.complete() {
			return n, &protocolError{code: StatusInvalidFramePayloadData, reason: "text message ends inside a UTF-8 sequence"}
		}
		return n, nil
	case err != nil && d.raw.err != nil:
		return n, d.raw.err
	case err != nil:
		return n, &protocolError{code: StatusInvalidFramePayloadData, reason: "invalid compressed data: " + err.Error()}
	}
	return n, nil
}

// discardRaw skips the rest of a compressed message's frames.
func (c *Conn) discardRaw() error {
	d := c.deflate
	for {
		ok, err := d.raw.next()
		if err != nil || !ok {
			return err
		}
		n := min(int64(c.rb.buffered()), c.rs.remaining)
		c.rb.consume(int(n))
		c.rs.remaining -= n
	}
}

// readPayload reads up to len(p) bytes of the current frame's payload,
// unmasks them, counts them and checks text as it goes.
func (c *Conn) readPayload(p []byte) (int, error) {
	if int64(len(p)) > c.rs.remaining {
		p = p[:c.rs.remaining]
	}
	var n int
	direct := c.rb.buffered() == 0 && len(p) >= smallReadSize && !c.rb.nonblocking
	if direct {
		// Large payloads go straight from the transport to the caller.
		var err error
		n, err = c.rb.src.Read(p)
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		c.rb.read.Add(uint64(n))
	} else {
		if c.rb.buffered() == 0 {
			if err := c.rb.fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
		}
		src := c.rb.bytes()
		n = min(len(p), len(src))
		if c.rs.masked {
			c.rs.key = maskCopy(c.rs.key, p, src[:n])
		} else {
			copy(p, src[:n])
		}
		c.rb.consume(n)
	}
	p = p[:n]
	if c.rs.masked && direct {
		c.rs.key = maskBytes(c.rs.key, p)
	}
	c.rs.remaining -= int64(n)
	c.rs.size += int64(n)
	if c.rs.msgType() == MessageText && !c.rs.utf8.write(p) {
		return n, &protocolError{code: StatusInvalidFramePayloadData, reason: "text message is not valid UTF-8"}
	}
	return n, nil
}

// peekHeader buffers and parses the next frame header without consuming it,
// so that a read interrupted half-way leaves the stream where it was.
func (c *Conn) peekHeader() (frameHeader, int, error) {
	if err := c.rb.ensure(2); err != nil {
		return frameHeader{}, 0, err
	}
	hlen := frameHeaderSize(c.rb.bytes()[1])
	if err := c.rb.ensure(hlen); err != nil {
		return frameHeader{}, 0, err
	}
	h, _, err := parseFrameHeader(c.rb.bytes())
	return h, hlen, err
}

// nextFrame reads frame headers until a data frame begins or continues,
// handling the control frames it meets.
func (c *Conn) nextFrame() error {
	for {
		h, hlen, err := c.peekHeader()
		if err != nil {
			return err
		}
		compressed, err := c.checkHeader(h, c.rs.inMessage, c.rs.size)
		if err != nil {
			return err
		}
		if h.opcode.isControl() {
			// Read header and payload together, so that an interrupted
			// read never leaves half a control frame consumed.
			if err := c.rb.ensure(hlen + int(h.length)); err != nil {
				return err
			}
			if err := c.readControl(h, hlen); err != nil {
				return err
			}
			continue
		}
		if h.opcode != opContinuation {
			c.rs.inMessage = true
			c.msgsIn.Add(1)
			c.rs.typ = h.opcode
			c.rs.size = 0
			c.rs.inflated = 0
			c.rs.compressed = compressed
			c.rs.utf8.reset()
		}
		c.rb.consume(hlen)
		c.rs.remaining = h.length
		c.rs.key = h.key
		c.rs.masked = h.masked
		c.rs.fin = h.fin
		if compressed {
			c.deflate.startInflate(c)
		}
		return nil
	}
}

// checkHeader applies every rule a frame header can be refused by before
// its payload is read, given where the reader stands (inside a data message
// or not, and the message's size so far): masking direction, RSV bits,
// opcodes and their order, and the read limit (1009 before the payload
// arrives). It reports whether the frame begins a compressed message. The
// event loop's pre-scan (events.go) asks it too, so that a header refused
// here is handed to the parser without waiting for its payload.
func (c *Conn) checkHeader(h frameHeader, inMessage bool, size int64) (compressed bool, err error) {
	if c.client && h.masked {
		return false, protoErr("server frame is masked")
	}
	if !c.client && !h.masked {
		return false, protoErr("client frame is not masked")
	}
	switch {
	case h.rsv == 0:
	case h.rsv == bitRSV1 && c.deflate != nil && (h.opcode == opText || h.opcode == opBinary):
		compressed = true // the first frame of a compressed message (RFC 7692 §6)
	case h.rsv == bitRSV1 && c.deflate != nil:
		return false, protoErr("RSV1 set on a continuation or control frame")
	default:
		return false, protoErr("reserved bits set with no extension negotiated")
	}
	switch h.opcode {
	case opClose, opPing, opPong:
		return false, nil
	case opText, opBinary:
		if inMessage {
			return false, protoErr("new data frame inside a fragmented message")
		}
		size = 0
	case opContinuation:
		if !inMessage {
			return false, protoErr("continuation frame with no message to continue")
		}
	default:
		// A reserved control opcode is refused on its header, as a
		// reserved data opcode is: waiting for a payload that means
		// nothing could only turn a protocol error into a lost connection.
		return false, protoErr("reserved opcode " + strconv.Itoa(int(h.opcode)))
	}
	if limit := c.readLimit.Load(); limit >= 0 && size+h.length > limit {
		return false, &protocolError{code: StatusMessageTooBig, reason: "message exceeds the read limit of " + strconv.FormatInt(limit, 10) + " bytes"}
	}
	return compressed, nil
}

// handleControl acts on a ping, pong or close frame.
func (c *Conn) handleControl(op opcode, payload []byte) error {
	switch op {
	case opPing:
		return c.writeControl(opPong, payload)
	case opPong:
		c.deliverPong(payload)
		return nil
	case opClose:
		ce, err := parseClosePayload(payload)
		if err != nil {
			return err
		}
		ce.Remote = true
		c.recordPeerClose(ce)
		// Echo the peer's code (RFC 6455 §5.5.1), unless we started the
		// close ourselves; then the handshake is complete.
		c.writeClose(ce.Code, "")
		c.CloseNow()
		return ce
	}
	return protoErr("unknown control opcode " + strconv.Itoa(int(op)))
}

// readControl consumes the buffered control frame h, hlen bytes of header
// and its payload, and handles it. Its payload is copied out of the read
// buffer, which the answer (a pong, a close) may need to refill, into a
// pooled buffer rather than one in the Conn: an idle connection then holds
// none. (Not the stack: the pong's payload reaches the writev buffers.)
func (c *Conn) readControl(h frameHeader, hlen int) error {
	buf := controlPayloadPool.Get().(*[maxControlPayload]byte)
	defer controlPayloadPool.Put(buf)
	payload := buf[:copy(buf[:], c.rb.bytes()[hlen:hlen+int(h.length)])]
	c.rb.consume(hlen + int(h.length))
	if h.masked {
		maskBytes(h.key, payload)
	}
	return c.handleControl(h.opcode, payload)
}

// parseClosePayload checks a close frame's payload (RFC 6455 §5.5.1, §7.4).
func parseClosePayload(p []byte) (*CloseError, error) {
	switch {
	case len(p) == 0:
		return &CloseError{Code: StatusNoStatusRcvd}, nil
	case len(p) == 1:
		return nil, protoErr("close frame payload of 1 byte")
	}
	code := StatusCode(binary.BigEndian.Uint16(p))
	if !validWireCode(code) {
		return nil, protoErr("invalid close code " + strconv.Itoa(int(code)))
	}
	if !utf8.Valid(p[2:]) {
		return nil, protoErr("close reason is not valid UTF-8")
	}
	return &CloseError{Code: code, Reason: string(p[2:])}, nil
}

// fail sends the close frame for a protocol violation and closes the
// connection (RFC 6455 §7.1.7). Nothing the peer sends after that is acted
// on. Before closing, the connection is half-closed and drained until the
// peer's close frame or EOF, for at most a second: closing a socket with
// unread data resets the connection, and the reset can destroy our close
// frame before the peer has read it.
func (c *Conn) fail(code StatusCode, reason string) *CloseError {
	ce := &CloseError{Code: code, Reason: reason}
	if c.writeClose(code, reason) == nil {
		c.t.closeWrite()
		c.drainUntilClose(time.Now().Add(min(c.cfg.closeTimeout, time.Second)))
	}
	c.CloseNow()
	return ce
}

// drainUntilClose reads and discards frames until the peer's close frame
// arrives, an error occurs or the deadline passes. It runs after this side
// sent its close frame, when nothing read matters any more but the peer's
// answer, so it checks nothing but the framing. The caller holds readSem.
func (c *Conn) drainUntilClose(deadline time.Time) error {
	if c.readErr != nil {
		return c.readErr
	}
	c.t.beginRead(nil)
	c.t.SetReadDeadline(deadline)
	if err := c.discard(c.rs.remaining); err != nil {
		return err
	}
	c.rs.remaining, c.rs.inMessage = 0, false
	for {
		h, hlen, err := c.peekHeader()
		var pe *protocolError
		if err != nil && (!errors.As(err, &pe) || h.length <= 0) {
			return err
		}
		c.rb.consume(hlen)
		if h.opcode != opClose || err != nil {
			if err := c.discard(h.length); err != nil {
				return err
			}
			continue
		}
		if err := c.rb.ensure(int(h.length)); err != nil {
			return err
		}
		var buf [maxControlPayload]byte
		payload := buf[:copy(buf[:], c.rb.bytes()[:h.length])]
		c.rb.consume(int(h.length))
		if h.masked {
			maskBytes(h.key, payload)
		}
		ce, err := parseClosePayload(payload)
		if err != nil {
			return err
		}
		ce.Remote = true
		c.recordPeerClose(ce)
		c.readErr = ce
		return nil
	}
}

// discard skips n bytes of the stream.
func (c *Conn) discard(n int64) error {
	for n > 0 {
		if c.rb.buffered() == 0 {
			if err := c.rb.fill(); err != nil {
				return err
			}
		}
		k := int64(c.rb.buffered())
		if k > n {
			k = n
		}
		c.rb.consume(int(k))
		n -= k
	}
	return nil
}

// recordPeerClose records the peer's first close frame. Only the holder of
// readSem reads frames, so no other call runs meanwhile and closeRcvd alone
// tells whether one came before (no sync.Once needed in every Conn).
func (c *Conn) recordPeerClose(ce *CloseError) {
	if c.closeRcvd.fired() {
		return
	}
	c.peerClose = ce // before closeRcvd fires: readers check it first
	c.closeRcvd.fire()
	// After closeRcvd: see writeClose.
	c.closedBy.CompareAndSwap(0, uint32(ClosedByPeer))
}
