package websocket

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// writeVec writes two slices with one writev where the transport supports
// it. It is pooled because a net.Buffers built on the stack escapes through
// the io.Writer (two allocations for every large write), and a write needs
// it only while it runs: an idle connection should not carry its 144 bytes.
//
// Over a socket it first writes without the runtime's poller (writeNow):
// most writes fit in the socket's send buffer and need no deadline, and
// arming one costs a clock read and a runtime timer change per write.
type writeVec struct {
	arr  [2][]byte
	bufs net.Buffers

	rawWrite func(fd uintptr) bool // v.writeSocket, bound once per pooled writeVec
	iov      iovecs
	rawN     int64 // bytes writeSocket wrote
}

var writeVecPool = sync.Pool{New: func() any {
	v := new(writeVec)
	v.rawWrite = v.writeSocket
	return v
}}

func getWriteVec() *writeVec { return writeVecPool.Get().(*writeVec) }

func putWriteVec(v *writeVec) { writeVecPool.Put(v) }

// writeTo writes head, then tail, to w. It keeps no reference to either
// afterwards, so a connection pins no caller's slice or prepared frame.
func (v *writeVec) writeTo(w io.Writer, head, tail []byte) (int64, error) {
	if st, ok := w.(*socketTransport); ok {
		// net.Buffers uses writev only on the net package's own
		// connections, not through the interface the transport embeds.
		w = st.Conn
	}
	v.arr = [2][]byte{head, tail}
	v.bufs = v.arr[:]
	n, err := v.bufs.WriteTo(w)
	v.arr, v.bufs = [2][]byte{}, nil
	return n, err
}

// writeNow writes as much of head, then tail, as the socket raw takes
// without waiting, and returns how many bytes that was. It returns 0 when
// raw is nil (the transport is not a socket), when the socket's write
// deadline has passed or it is closed: the caller writes what is left the
// ordinary way, under a deadline, and meets any error there.
func (v *writeVec) writeNow(raw syscall.RawConn, head, tail []byte) int64 {
	if raw == nil {
		return 0
	}
	v.arr, v.rawN = [2][]byte{head, tail}, 0
	raw.Write(v.rawWrite) // an error means nothing was written
	v.arr = [2][]byte{}
	return v.rawN
}

// writeSocket writes v.arr to fd until it is written, the socket's buffer
// is full or an error occurs, counting the bytes in v.rawN. It never asks
// the poller to wait: an error or a full buffer is left to the ordinary
// write that follows.
func (v *writeVec) writeSocket(fd uintptr) bool {
	for len(v.arr[0])+len(v.arr[1]) > 0 {
		var n int
		var err error
		switch {
		case len(v.arr[0]) == 0:
			n, err = sysWrite(fd, v.arr[1])
		case len(v.arr[1]) == 0:
			n, err = sysWrite(fd, v.arr[0])
		default:
			n, err = sysWritev(fd, &v.iov, v.arr[0], v.arr[1])
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return true
		}
		v.rawN += int64(n)
		v.arr[0], v.arr[1] = skipBytes(v.arr[0], v.arr[1], int64(n))
	}
	return true
}

// skipBytes drops the first n bytes of head followed by tail.
func skipBytes(head, tail []byte, n int64) ([]byte, []byte) {
	if n <= int64(len(head)) {
		return head[n:], tail
	}
	return head[len(head):], tail[n-int64(len(head)):]
}
