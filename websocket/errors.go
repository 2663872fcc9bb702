package websocket

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// ErrClosed is matched (errors.Is) by the errors of operations on a
// connection that is closed or closing: after Close or CloseNow, after a close
// frame was sent, or after a fatal error.
var ErrClosed = errors.New("websocket: connection closed")

// CloseError reports how a connection ended.
//
// Remote is true when the peer sent the close frame; Code is then the peer's
// code (1005 when its close frame had none). Remote is false when this side
// closed or failed the connection: Code is the code this side sent (1002 for
// a protocol violation by the peer, 1007 for invalid UTF-8, 1009 for a message
// over the read limit, ...), or 1006 when the connection was lost without a
// close frame.
//
// errors.Is(err, io.EOF) is true for a CloseError with Remote set and code
// 1000 or 1001: the peer ended the conversation normally, so a read loop can
// treat it as an ordinary end.
type CloseError struct {
	Code   StatusCode
	Reason string
	Remote bool

	cause error // the underlying error of a lost connection, if any
}

func (e *CloseError) Error() string {
	who := "local"
	if e.Remote {
		who = "peer"
	}
	s := "websocket: closed by " + who + " with " + e.Code.String()
	if e.Reason != "" {
		s += ": " + strconv.Quote(e.Reason)
	}
	return s
}

// Is makes a normal close by the peer match io.EOF, and every close match
// ErrClosed.
func (e *CloseError) Is(target error) bool {
	switch target {
	case io.EOF:
		return e.Remote && (e.Code == StatusNormalClosure || e.Code == StatusGoingAway)
	case ErrClosed:
		return true
	}
	return false
}

// Unwrap returns the cause of a lost connection. A transport that ended
// (io.EOF: a TCP FIN, or END_STREAM over HTTP/2) without a close frame is
// given as io.ErrUnexpectedEOF, so that errors.Is(err, io.EOF) keeps
// meaning what it says above: a normal end by the peer, not a lost
// connection.
func (e *CloseError) Unwrap() error {
	if errors.Is(e.cause, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return e.cause
}

// HandshakeError reports a failed opening handshake.
//
// On the server (Accept) Status is the HTTP status written to the client and
// Response is nil. On the client (Dial) Status is the status received (0 when
// none was) and Response is the server's response, whose Body holds the first
// KiB of what the server sent.
type HandshakeError struct {
	Status   int
	Message  string
	Response *http.Response

	cause error
}

func (e *HandshakeError) Unwrap() error { return e.cause }

func (e *HandshakeError) Error() string {
	if e.Status != 0 {
		return "websocket: handshake failed (" + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status) + "): " + e.Message
	}
	return "websocket: handshake failed: " + e.Message
}

// protocolError is a violation found while reading; it becomes a close frame.
type protocolError struct {
	code   StatusCode
	reason string
}

func (e *protocolError) Error() string { return "websocket: " + e.reason }

func protoErr(reason string) error {
	return &protocolError{code: StatusProtocolError, reason: reason}
}
