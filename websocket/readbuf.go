package websocket

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// smallReadSize is the buffer a connection owns when it reads from
// something other than a socket (TLS, an HTTP/2 stream). Waiting for its next
// message, it reads into it, so an idle connection pins no pooled buffer; a
// read that fills it means the stream is busy, and the next reads go to a
// pooled buffer until the stream drains.
const smallReadSize = 512

// socketReadBufferSize is the pooled buffer a read from a socket takes. It
// is given back as soon as the socket has nothing more and nothing read is
// left unconsumed, so it can be large: a message of up to 32 KiB arrives in
// one read, where the 8 KiB of readBufferSize took a second read for the
// rest of any message over 8 KiB. A connection whose peer stops part-way
// through a frame keeps it while it waits (8 KiB before).
const socketReadBufferSize = 32 << 10

var socketReadBufferPool = sync.Pool{New: func() any { b := make([]byte, socketReadBufferSize); return &b }}

// largeReadBufferSize is the pooled buffer a socket read takes instead when
// the connection's last message did not fit in socketReadBufferSize: a
// 64 KiB message and its header then arrive in one read rather than a
// 32 KiB read and a second one for the rest, which saves a read syscall per
// message. Messages bigger still read what does not fit straight into
// their destination (readPayload). Like the smaller one, it is held only
// while the socket is busy.
const largeReadBufferSize = 128 << 10

var largeReadBufferPool = sync.Pool{New: func() any { b := make([]byte, largeReadBufferSize); return &b }}

// readBuffer is a bufio.Reader that keeps its big buffer only while busy.
//
// Over a socket it does better: it waits for data with no buffer at all and
// takes a pooled buffer only once a read will fill it, through the socket's
// syscall.RawConn, so that a message of up to 8 KiB costs one read however
// long the connection was idle.
type readBuffer struct {
	src     io.Reader
	raw     syscall.RawConn
	rawRead func(fd uintptr) bool // b.readSocket, bound once
	small   *[smallReadSize]byte  // not needed over a socket

	// rawErrno, and rawEOF below with the other flags, are how the last
	// read of the socket failed: kept apart from an error value, 8 bytes
	// smaller, so that an idle Conn fits its size class.
	rawErrno syscall.Errno

	big  *[]byte // from pool() while the stream is busy
	buf  []byte  // small, *big, or nil over a socket
	r, w int

	rawEOF   bool // the last read of the socket found the peer's end of the stream
	lastFull bool // the last read filled the buffer: more is likely waiting

	// large: the last message outgrew socketReadBufferSize, so the next
	// pooled buffer over a socket is a largeReadBufferSize one. Set by the
	// reader after each message (wantLarge).
	large bool

	// nonblocking is the event loop's mode (events.go): fill never waits
	// but returns errWouldBlock, so that the parser sees only the bytes
	// the loop buffered, and the loop reads the socket with readAvailable.
	nonblocking bool

	// read counts the bytes taken from the stream, for Conn.Stats: added
	// to by the reading goroutine alone, read by any.
	read atomic.Uint64
}

func (b *readBuffer) buffered() int { return b.w - b.r }

func (b *readBuffer) bytes() []byte { return b.buf[b.r:b.w] }

func (b *readBuffer) consume(n int) { b.r += n }

// setSource makes src the stream to read, through its RawConn if it has one.
func (b *readBuffer) setSource(src io.Reader) {
	b.src = src
	if sc, ok := src.(syscall.Conn); ok && rawSocketIO {
		if raw, err := sc.SyscallConn(); err == nil {
			b.raw = raw
			b.rawRead = b.readSocket
			return
		}
	}
	b.small = new([smallReadSize]byte)
}

// errWouldBlock is what fill returns in the nonblocking mode: the parser
// has reached the end of what was buffered for it.
var errWouldBlock = errors.New("websocket: no more input buffered")

// fill reads at least one more byte from src.
func (b *readBuffer) fill() error {
	if b.nonblocking {
		return errWouldBlock
	}
	if b.raw != nil {
		return b.fillSocket()
	}
	if b.r == b.w {
		b.r, b.w = 0, 0
		if b.lastFull {
			if b.big == nil {
				b.big = b.pool().Get().(*[]byte)
			}
			b.buf = *b.big
		} else {
			b.releaseBig()
			b.buf = b.smallBuf()
		}
	} else if b.w == len(b.buf) {
		if b.r > 0 {
			b.w = copy(b.buf, b.buf[b.r:b.w])
			b.r = 0
		}
		if b.w == len(b.buf) && b.big == nil {
			b.big = b.pool().Get().(*[]byte)
			b.w = copy(*b.big, b.buf[:b.w])
			b.buf = *b.big
		}
	}
	for {
		n, err := b.src.Read(b.buf[b.w:])
		b.w += n
		b.lastFull = b.w == len(b.buf)
		if n > 0 {
			b.read.Add(uint64(n))
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ensure buffers at least n bytes (n <= smallReadSize).
func (b *readBuffer) ensure(n int) error {
	for b.buffered() < n {
		if err := b.fill(); err != nil {
			if err == io.EOF && b.buffered() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// releaseIdle returns the pooled buffer when nothing is buffered, so a
// connection between messages pins none.
func (b *readBuffer) releaseIdle() {
	if b.r == b.w && b.big != nil {
		b.r, b.w = 0, 0
		b.buf = b.smallBuf()
		b.releaseBig()
	}
}

// wantLarge records how big the message just read was (header included),
// for the choice of the next pooled buffer over a socket.
func (b *readBuffer) wantLarge(messageBytes int64) {
	b.large = b.raw != nil && messageBytes > socketReadBufferSize
}

// getBig takes a pooled buffer: the larger kind after a large message.
func (b *readBuffer) getBig() *[]byte {
	if b.large {
		return largeReadBufferPool.Get().(*[]byte)
	}
	return b.pool().Get().(*[]byte)
}

// pool is where the buffers for busy reads come from: over a socket, the
// larger ones readSocket takes only once a read will fill them.
func (b *readBuffer) pool() *sync.Pool {
	if b.raw != nil {
		return &socketReadBufferPool
	}
	return &readBufferPool
}

// smallBuf is the buffer an idle connection reads into: none over a socket.
func (b *readBuffer) smallBuf() []byte {
	if b.small == nil {
		return nil
	}
	return b.small[:]
}

// pooledSize is the size of the buffers pool holds.
func (b *readBuffer) pooledSize() int {
	if b.raw != nil {
		return socketReadBufferSize
	}
	return readBufferSize
}

func (b *readBuffer) releaseBig() {
	if b.big != nil {
		switch len(*b.big) { // not one grown by readAvailable
		case b.pooledSize():
			b.pool().Put(b.big)
		case largeReadBufferSize: // only ever taken over a socket
			largeReadBufferPool.Put(b.big)
		}
		b.big = nil
	}
}

// fillSocket reads from the socket with the runtime's poller: readSocket
// tries a non-blocking read and, when nothing is there, gives the buffer
// back before the poller parks the goroutine.
func (b *readBuffer) fillSocket() error {
	switch {
	case b.r == b.w:
		b.r, b.w = 0, 0
	case b.w == len(b.buf) && b.r > 0:
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	b.rawErrno, b.rawEOF = 0, false
	if err := b.raw.Read(b.rawRead); err != nil {
		return err
	}
	return b.rawResult()
}

// rawResult is the error of the last socket read readSocket made, if any.
func (b *readBuffer) rawResult() error {
	switch {
	case b.rawEOF:
		return io.EOF
	case b.rawErrno != 0:
		return os.NewSyscallError("read", b.rawErrno)
	}
	return nil
}

func (b *readBuffer) readSocket(fd uintptr) bool {
	if b.big == nil {
		b.big = b.getBig()
		b.w = copy(*b.big, b.buf[b.r:b.w])
		b.r = 0
		b.buf = *b.big
	}
	for {
		n, err := sysRead(fd, b.buf[b.w:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if b.r == b.w {
				b.r, b.w = 0, 0
				b.buf = b.smallBuf()
				b.releaseBig()
			} else {
				b.shrinkToPooled()
			}
			// The event loop waits in its own poller, not this one.
			return b.nonblocking
		case err != nil:
			b.rawErrno = asErrno(err)
		case n == 0:
			b.rawEOF = true
		default:
			b.w += n
			b.read.Add(uint64(n))
		}
		return true
	}
}

// asErrno is the errno of a failed read system call (EIO for any error
// that is not one, which sysRead does not return).
func asErrno(err error) syscall.Errno {
	if errno, ok := err.(syscall.Errno); ok {
		return errno
	}
	return syscall.EIO
}

// shrinkToPooled moves what is buffered out of a large buffer into a
// pooled one of socketReadBufferSize when it fits, before the connection
// waits for more: a peer that stops part-way through a frame after a large
// message then pins 32 KiB, as any other, not 128 KiB. It costs a copy of
// at most 32 KiB, only when a read finds the socket empty mid-frame. b
// holds a pooled buffer (readSocket takes one before it reads).
func (b *readBuffer) shrinkToPooled() {
	if len(*b.big) != largeReadBufferSize || b.buffered() > socketReadBufferSize {
		return
	}
	small := socketReadBufferPool.Get().(*[]byte)
	b.w = copy(*small, b.buf[b.r:b.w])
	b.r = 0
	largeReadBufferPool.Put(b.big)
	b.big, b.buf = small, *small
}

// readAvailable is the event loop's read: it reads what the socket holds
// now, without waiting, into a buffer big enough for need bytes from the
// read position (a pooled one up to largeReadBufferSize, a buffer of its own
// past that: a compressed message, which the parser takes only whole, may
// be bigger than the pooled buffer; see inflateWindow). It reads once: a
// read that does not fill the buffer has drained the socket, and the loop's
// poller reports whatever comes next. It returns the bytes read (0: none
// there), and io.EOF when the peer has closed.
func (b *readBuffer) readAvailable(need int) (n int, err error) {
	if b.r == b.w {
		b.r, b.w = 0, 0
	} else if b.r > 0 {
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	if b.big != nil && b.w == len(b.buf) {
		need = max(need, 2*len(b.buf)) // never read into no room: that reads as EOF
	}
	if need > b.pooledSize() && need > len(b.buf) {
		var grown *[]byte
		if need <= largeReadBufferSize {
			grown = largeReadBufferPool.Get().(*[]byte)
		} else {
			g := make([]byte, max(need, 2*len(b.buf)))
			grown = &g
		}
		b.w = copy(*grown, b.buf[:b.w])
		b.releaseBig()
		b.big, b.buf = grown, *grown
	}
	b.rawErrno, b.rawEOF = 0, false
	w := b.w
	if err := b.raw.Read(b.rawRead); err != nil {
		return 0, err
	}
	return b.w - w, b.rawResult()
}

// preload makes p, bytes that arrived with the handshake, the first ones
// read. p is the connection's own (no pooled buffer is pinned by it).
func (b *readBuffer) preload(p []byte) {
	if len(p) > 0 {
		b.buf, b.r, b.w = p, 0, len(p)
		b.read.Add(uint64(len(p)))
	}
}
