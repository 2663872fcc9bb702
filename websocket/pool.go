package websocket

import "sync"

// Buffers are taken from pools only while a message is in flight, so an idle
// connection holds none.
const (
	readBufferSize  = 8 << 10
	writeBufferSize = 8 << 10
	// maxPooledWriteBuffer keeps a write buffer that grew for a burst of
	// sends out of the pool, so the pool does not pin large arrays.
	maxPooledWriteBuffer = 256 << 10
)

var readBufferPool = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// controlPayloadPool holds the payload of a control frame while it is
// handled (readControl).
var controlPayloadPool = sync.Pool{New: func() any { return new([maxControlPayload]byte) }}

var writeBufferPool = sync.Pool{New: func() any { b := make([]byte, 0, writeBufferSize); return &b }}

func getWriteBuffer() *[]byte { return writeBufferPool.Get().(*[]byte) }

func putWriteBuffer(b *[]byte) {
	if cap(*b) > maxPooledWriteBuffer {
		return
	}
	*b = (*b)[:0]
	writeBufferPool.Put(b)
}
