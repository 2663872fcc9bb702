//go:build unix

package websocket

import (
	"syscall"
	"unsafe"
)

// rawSocketIO: on Unix, a socket's reads and writes are made directly on
// its descriptor, inside its syscall.RawConn, so that an idle connection
// holds no read buffer (readbuf.go) and a write that the socket takes at
// once needs no deadline (writev.go).
const rawSocketIO = true

// iovecs are writev's two buffers, kept in the Conn so a write allocates
// nothing.
type iovecs [2]syscall.Iovec

func sysRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func sysWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }

// sysWritev writes head and then tail, both non-empty, with one writev.
func sysWritev(fd uintptr, iov *iovecs, head, tail []byte) (int, error) {
	iov[0].Base, iov[1].Base = &head[0], &tail[0]
	iov[0].SetLen(len(head))
	iov[1].SetLen(len(tail))
	r, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
	*iov = iovecs{}
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
