package websocket

import (
	"bytes"
	"context"
	"io"
	"net"
	"time"
)

// scriptedTransport plays fixed input to a connection and collects what it
// writes; after the input it reports EOF.
type scriptedTransport struct {
	in     []byte
	out    bytes.Buffer
	closed bool
}

func (s *scriptedTransport) Read(p []byte) (int, error) {
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	if len(s.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.in)
	s.in = s.in[n:]
	return n, nil
}

func (s *scriptedTransport) Write(p []byte) (int, error) {
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	return s.out.Write(p)
}

func (s *scriptedTransport) Close() error                     { s.closed = true; return nil }
func (s *scriptedTransport) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptedTransport) SetWriteDeadline(time.Time) error { return nil }
func (s *scriptedTransport) beginRead(context.Context)        {}
func (s *scriptedTransport) endRead()                         {}
func (s *scriptedTransport) closeWrite() error                { return nil }
func (s *scriptedTransport) boundToHandler() func()           { return func() {} }
func (s *scriptedTransport) LocalAddr() net.Addr              { return unknownAddr{} }
func (s *scriptedTransport) RemoteAddr() net.Addr             { return unknownAddr{} }
