package websocket

import (
	"io"
	"net"
	"syscall"
)

// writeVec writes two slices with one writev where the transport supports
// it. It lives in the Conn because a net.Buffers built on the stack escapes
// through the io.Writer: two allocations for every large write.
//
// Over a socket it first writes without the runtime's poller (writeNow):
// most writes fit in the socket's send buffer and need no deadline, and
// arming one costs a clock read and a runtime timer change per write.
type writeVec struct {
	arr  [2][]byte
	bufs net.Buffers

	probed   bool                  // raw was looked for
	raw      syscall.RawConn       // the socket's, when the transport is one
	rawWrite func(fd uintptr) bool // v.writeSocket, bound once
	iov      iovecs
	rawN     int64 // bytes writeSocket wrote
}

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

// writeNow writes as much of head, then tail, as the socket takes without
// waiting, and returns how many bytes that was. It returns 0 when t is not a
// socket, when the socket's write deadline has passed or it is closed: the
// caller writes what is left the ordinary way, under a deadline, and meets
// any error there.
func (v *writeVec) writeNow(t transport, head, tail []byte) int64 {
	if !v.probed {
		v.probed = true
		if !rawSocketIO {
			return 0
		}
		if sc, ok := t.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				v.raw = raw
				v.rawWrite = v.writeSocket
			}
		}
	}
	if v.raw == nil {
		return 0
	}
	v.arr, v.rawN = [2][]byte{head, tail}, 0
	v.raw.Write(v.rawWrite) // an error means nothing was written
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
