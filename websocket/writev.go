package websocket

import (
	"io"
	"net"
)

// writeVec writes two slices with one writev where the transport supports
// it. It lives in the Conn because a net.Buffers built on the stack escapes
// through the io.Writer: two allocations for every large write.
type writeVec struct {
	arr  [2][]byte
	bufs net.Buffers
}

// writeTo writes head, then tail, to w. It keeps no reference to either
// afterwards, so a connection pins no caller's slice or prepared frame.
func (v *writeVec) writeTo(w io.Writer, head, tail []byte) (int64, error) {
	v.arr = [2][]byte{head, tail}
	v.bufs = v.arr[:]
	n, err := v.bufs.WriteTo(w)
	v.arr, v.bufs = [2][]byte{}, nil
	return n, err
}
