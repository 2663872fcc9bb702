//go:build !unix

package websocket

import "errors"

// rawSocketIO: elsewhere (Windows), sockets are read and written through
// net.Conn alone; see socket_unix.go for what Unix gains.
const rawSocketIO = false

type iovecs struct{}

func sysRead(uintptr, []byte) (int, error)  { return 0, errors.ErrUnsupported }
func sysWrite(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

func sysWritev(uintptr, *iovecs, []byte, []byte) (int, error) { return 0, errors.ErrUnsupported }
