package websocket

import (
	"bufio"
	"bytes"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// deflateTail ends every compressed message on the wire; senders strip it
// and receivers put it back (RFC 7692 §7.2.1, §7.2.2).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// inflateTail is what a receiver appends: the stripped tail, then an empty
// final block, so that the decompressor ends the message with io.EOF.
var inflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// deflater is a connection's permessage-deflate state. Its sending half is
// guarded by the connection's msgSem, its receiving half by readSem.
type deflater struct {
	params    deflateParams
	histBits  int // the sent history kept for context takeover: MaxWindowBits at most
	level     int
	threshold int
	binary    bool

	sendHist []byte // with context takeover: the end of what was compressed
	encBits  int    // the window of the compressor startMessage gave out
	out      sliceWriter
	outBuf   *[]byte // the pooled buffer behind out, held while a message is sent

	recvHist []byte        // with context takeover: the end of what was inflated
	inf      *inflater     // held while a compressed message is read
	fr       io.ReadCloser // inf's decompressor
	raw      rawPayload
}

func newDeflater(p deflateParams, co *CompressionOptions) *deflater {
	d := &deflater{params: p, level: 1, threshold: defaultCompressionThreshold}
	d.histBits = min(p.sendWindowBits, co.maxWindowBits())
	if co != nil {
		if co.Level >= 1 && co.Level <= 9 {
			d.level = co.Level
		}
		if co.Threshold != 0 {
			d.threshold = max(co.Threshold, 0)
		}
		d.binary = co.Binary
	}
	return d
}

// wants reports whether a message of this type and size is compressed.
func (d *deflater) wants(op opcode, size int) bool {
	if d == nil || size < d.threshold {
		return false
	}
	return op == opText || d.binary
}

// sliceWriter appends what is written to a slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// Compressors are pooled by level and window, so that connections without
// context takeover hold none between messages.
var flateWriterPools [10][16]sync.Pool

func getFlateWriter(level, windowBits int, w io.Writer, dict []byte) *flate.Writer {
	if windowBits < 15 {
		level = 0 // a custom window has its own encoder, whatever the level (see encoderWindow)
	}
	if fw, ok := flateWriterPools[level][windowBits].Get().(*flate.Writer); ok {
		fw.ResetDict(w, dict)
		return fw
	}
	var fw *flate.Writer
	if windowBits < 15 {
		fw, _ = flate.NewWriterWindow(w, 1<<windowBits)
		if len(dict) > 0 {
			fw.ResetDict(w, dict)
		}
	} else {
		fw, _ = flate.NewWriterDict(w, level, dict)
	}
	return fw
}

func putFlateWriter(level, windowBits int, fw *flate.Writer) {
	if windowBits < 15 {
		level = 0
	}
	// ResetDict, not Reset: a Writer remembers the dictionary it was last
	// given and Reset primes it with that again, which would index the
	// history a second time per message and keep the connection's history
	// reachable from the pool.
	fw.ResetDict(io.Discard, nil)
	flateWriterPools[level][windowBits].Put(fw)
}

// startMessage returns a compressor for one outgoing message, writing into
// d.out, primed with the history when context is kept.
//
// The compressor has to index its dictionary before each message, which
// costs about what compressing as many bytes does (11 µs for 8 KiB against
// 4.5 µs for a 1 KiB message, on the bench machine). A message of size n is
// therefore primed with the last max(2 KiB, 2n) bytes of the history only:
// small messages mostly repeat what was sent just before them. size < 0
// (a streamed message) takes the whole history.
func (d *deflater) startMessage(size int) *flate.Writer {
	var dict []byte
	if !d.params.sendNoTakeover {
		dict = d.sendHist
		if size >= 0 {
			if keep := max(2<<10, 2*size); len(dict) > keep {
				dict = dict[len(dict)-keep:]
			}
		}
	}
	d.encBits, dict = encoderWindow(d.params.sendWindowBits, size, dict)
	return getFlateWriter(d.level, d.encBits, &d.out, dict)
}

func (d *deflater) endMessage(fw *flate.Writer) {
	putFlateWriter(d.level, d.encBits, fw)
}

// encoderWindow chooses the compressor for a message of size bytes (size < 0:
// unknown) primed with dict, under a negotiated window of windowBits.
//
// Only klauspost's windowed encoder bounds its references by a window below
// 15 bits, and it has no levels. But a standard encoder is given nothing but
// the dictionary and the message, so it can never reference further back
// than len(dict)+size bytes: when the message fits in the window, trimming
// the dictionary to the room left beside it makes the standard encoder, with
// its level, safe. It returns 15 for the standard encoder (its window is 15
// bits, whatever was negotiated), or windowBits, and the dictionary to prime
// it with.
func encoderWindow(windowBits, size int, dict []byte) (int, []byte) {
	if windowBits >= 15 {
		return 15, dict
	}
	if size < 0 || size > 1<<windowBits {
		return windowBits, dict
	}
	if room := 1<<windowBits - size; len(dict) > room {
		dict = dict[len(dict)-room:]
	}
	return 15, dict
}

// remember adds sent plaintext to the history when context is kept.
func (d *deflater) remember(p []byte) {
	if !d.params.sendNoTakeover {
		d.sendHist = appendHistory(d.sendHist, p, 1<<d.histBits)
	}
}

// compress returns p compressed as one message payload, in a pooled buffer
// that stays valid until releaseOut.
func (d *deflater) compress(p []byte) []byte {
	d.takeOut()
	fw := d.startMessage(len(p))
	fw.Write(p)
	fw.Flush()
	d.endMessage(fw)
	d.remember(p)
	return bytes.TrimSuffix(d.out.b, deflateTail)
}

// takeOut gives out a pooled buffer for one message's compressed bytes.
func (d *deflater) takeOut() {
	d.outBuf = getWriteBuffer()
	d.out.b = (*d.outBuf)[:0]
}

// releaseOut returns the buffer, so an idle connection holds none.
func (d *deflater) releaseOut() {
	if d != nil && d.outBuf != nil {
		*d.outBuf = d.out.b
		putWriteBuffer(d.outBuf)
		d.outBuf, d.out.b = nil, nil
	}
}

// appendHistory appends p to the sliding window hist, keeping its last size
// bytes. The slice never holds more than size.
func appendHistory(hist, p []byte, size int) []byte {
	if len(p) >= size {
		hist = growHistory(hist, size, size)
		return append(hist[:0], p[len(p)-size:]...)
	}
	if len(hist)+len(p) > size {
		drop := len(hist) + len(p) - size
		hist = hist[:copy(hist, hist[drop:])]
	}
	return append(growHistory(hist, len(hist)+len(p), size), p...)
}

// growHistory gives hist room for need bytes. It grows by doubling up to
// size rather than taking the whole window at once: a connection that has
// sent a few small messages keeps a few hundred bytes of history, not the
// window's 8 or 32 KiB, and a busy one reaches the window in a handful of
// steps.
func growHistory(hist []byte, need, size int) []byte {
	if cap(hist) >= need {
		return hist
	}
	grown := make([]byte, len(hist), min(size, max(need, 2*cap(hist), minHistory)))
	copy(grown, hist)
	return grown
}

// minHistory is the first allocation of a history.
const minHistory = 512

// inflater is a decompressor and the buffer it reads the raw payload
// through. They are pooled together; one is held only while a message is
// read.
//
// The decompressor reads its input a byte at a time. Given a *bufio.Reader
// it takes its specialised path, where each byte is a direct call on a
// concrete type; given any other io.ByteReader (rawPayload itself, say) it
// calls ReadByte through an interface, and a byte then costs a dynamic call
// plus the frame bookkeeping and unmasking of one byte, about a quarter of
// the time spent inflating. The bufio.Reader instead takes the payload in
// chunks through rawPayload.Read, which unmasks a chunk at once.
type inflater struct {
	fr  io.ReadCloser
	src *bufio.Reader
}

// inflateChunk is how much raw payload the inflater takes at a time.
const inflateChunk = 4 << 10

var inflaterPool = sync.Pool{New: func() any {
	src := bufio.NewReaderSize(eofReader, inflateChunk)
	return &inflater{fr: flate.NewReader(src), src: src}
}}

// eofReader parks a pooled inflater without a reference to a connection.
var eofReader = bytes.NewReader(nil)

// startInflate prepares to read the compressed message that just began.
func (d *deflater) startInflate(c *Conn) {
	d.raw = rawPayload{c: c}
	var dict []byte
	if !d.params.recvNoTakeover {
		dict = d.recvHist
	}
	d.inf = inflaterPool.Get().(*inflater)
	d.inf.src.Reset(&d.raw)
	d.inf.fr.(flate.Resetter).Reset(d.inf.src, dict)
	d.fr = d.inf.fr
}

// finishInflate returns the decompressor once the message was read whole.
func (d *deflater) finishInflate() {
	if d.inf != nil {
		d.inf.src.Reset(eofReader)
		d.inf.fr.(flate.Resetter).Reset(d.inf.src, nil)
		inflaterPool.Put(d.inf)
		d.inf, d.fr = nil, nil
	}
}

// rawPayload reads the compressed payload of the current message across
// its frames, unmasked, followed by inflateTail.
type rawPayload struct {
	c    *Conn
	tail int   // bytes of inflateTail served
	err  error // the connection's error, kept apart from the decompressor's
}

// next makes payload bytes available; it reports false at the end of the
// message's frames.
func (r *rawPayload) next() (bool, error) {
	c := r.c
	for c.rs.remaining == 0 {
		if c.rs.fin {
			return false, nil
		}
		if err := c.nextFrame(); err != nil {
			r.err = err
			return false, err
		}
	}
	if c.rb.buffered() == 0 {
		if err := c.rb.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			r.err = err
			return false, err
		}
	}
	return true, nil
}

func (r *rawPayload) Read(p []byte) (int, error) {
	ok, err := r.next()
	if err != nil {
		return 0, err
	}
	if !ok {
		if r.tail == len(inflateTail) {
			return 0, io.EOF
		}
		n := copy(p, inflateTail[r.tail:])
		r.tail += n
		return n, nil
	}
	c := r.c
	n := copy(p[:min(int64(len(p)), c.rs.remaining)], c.rb.bytes())
	c.rb.consume(n)
	if c.rs.masked {
		c.rs.key = maskBytes(c.rs.key, p[:n])
	}
	c.rs.remaining -= int64(n)
	c.rs.size += int64(n)
	return n, nil
}
