package websocket

import "strconv"

// MessageType is the type of a data message: text (UTF-8) or binary.
type MessageType int

// The two kinds of data message of RFC 6455 §5.6. The values are the frame opcodes.
const (
	MessageText   MessageType = 1
	MessageBinary MessageType = 2
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one whole data message, as returned by Conn.Read.
// Data belongs to the caller.
type Message struct {
	Type MessageType
	Data []byte
}

// StatusCode is a close code (RFC 6455 §7.4 and the IANA registry).
type StatusCode int

// Close codes. 1005, 1006 and 1015 are never sent on the wire: they are used
// locally to report a close frame without a code, a connection lost without a
// close frame, and a TLS failure.
const (
	StatusNormalClosure           StatusCode = 1000
	StatusGoingAway               StatusCode = 1001
	StatusProtocolError           StatusCode = 1002
	StatusUnsupportedData         StatusCode = 1003
	StatusNoStatusRcvd            StatusCode = 1005
	StatusAbnormalClosure         StatusCode = 1006
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusMandatoryExtension      StatusCode = 1010
	StatusInternalError           StatusCode = 1011
	StatusServiceRestart          StatusCode = 1012
	StatusTryAgainLater           StatusCode = 1013
	StatusBadGateway              StatusCode = 1014
	StatusTLSHandshake            StatusCode = 1015
)

var statusNames = map[StatusCode]string{
	StatusNormalClosure:           "normal closure",
	StatusGoingAway:               "going away",
	StatusProtocolError:           "protocol error",
	StatusUnsupportedData:         "unsupported data",
	StatusNoStatusRcvd:            "no status",
	StatusAbnormalClosure:         "abnormal closure",
	StatusInvalidFramePayloadData: "invalid payload data",
	StatusPolicyViolation:         "policy violation",
	StatusMessageTooBig:           "message too big",
	StatusMandatoryExtension:      "mandatory extension",
	StatusInternalError:           "internal error",
	StatusServiceRestart:          "service restart",
	StatusTryAgainLater:           "try again later",
	StatusBadGateway:              "bad gateway",
	StatusTLSHandshake:            "TLS handshake",
}

func (c StatusCode) String() string {
	if s, ok := statusNames[c]; ok {
		return strconv.Itoa(int(c)) + " (" + s + ")"
	}
	return strconv.Itoa(int(c))
}

// validWireCode reports whether code may appear in a close frame
// (RFC 6455 §7.4.1 and §7.4.2; 1012-1014 are registered with IANA since).
func validWireCode(code StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
