package websocket

// ConnStats is what a connection has carried so far, and how it closed.
//
// Messages are data messages (text and binary), whatever their size or
// number of frames; pings, pongs and close frames are not messages.
// MessagesIn counts the messages whose first frame arrived (Read, ReadInto,
// Reader); MessagesOut counts the messages handed to the connection by a
// send (SendText, Write, SendPrepared, a Writer's Close), including one
// whose write then failed.
//
// Bytes are wire bytes: every byte of every frame (headers, masking keys,
// control frames, payloads as sent, so compressed when compressed) that
// the transport carried after the opening handshake, over HTTP/1.1 the TCP
// stream's (under TLS, before encryption) and over HTTP/2 the stream's DATA.
// They measure what the network carries and show what compression saves;
// the size of the application's own data is the application's to count, as
// it holds each message anyway. They are counted per read and write of the
// transport, so a message cut short still counts what went through, and
// BytesIn may run ahead of MessagesIn by frames read but not yet parsed.
//
// The counters are atomic and owned by the connection: a connection's reads
// and writes add to its own counters only, so counting costs no contended
// memory, and Stats may be called at any time from any goroutine.
type ConnStats struct {
	MessagesIn, MessagesOut uint64
	BytesIn, BytesOut       uint64

	// CloseSent and CloseReceived are the codes of the close frames this
	// side wrote and read: 0 while there was none, StatusNoStatusRcvd for a
	// close frame without a code.
	CloseSent, CloseReceived StatusCode

	// ClosedBy says whose close frame came first.
	ClosedBy ClosedBy
}

// ClosedBy says which side began a connection's closing handshake.
type ClosedBy uint8

const (
	// ClosedByNone: no close frame was written or read. The connection is
	// open, or it ended without a closing handshake (lost, or dropped by
	// CloseNow).
	ClosedByNone ClosedBy = iota
	// ClosedByLocal: this side wrote the first close frame (Close, the
	// close of a protocol violation, Server.Shutdown).
	ClosedByLocal
	// ClosedByPeer: the peer's close frame came first; this side echoed it.
	ClosedByPeer
)

func (b ClosedBy) String() string {
	switch b {
	case ClosedByLocal:
		return "local"
	case ClosedByPeer:
		return "peer"
	}
	return "none"
}

// Stats returns what the connection has carried so far and, once its
// closing handshake began, the close codes. It may be called at any time,
// also after the connection closed, from any goroutine.
func (c *Conn) Stats() ConnStats {
	st := ConnStats{
		MessagesIn:  c.msgsIn.Load(),
		MessagesOut: c.msgsOut.Load(),
		BytesIn:     c.rb.read.Load(),
		BytesOut:    c.bytesOut.Load(),
		CloseSent:   StatusCode(c.closeSentCode.Load()),
		ClosedBy:    ClosedBy(c.closedBy.Load()),
	}
	if c.peerClosed() {
		st.CloseReceived = c.peerClose.Code
	}
	return st
}

// ServerStats counts a Server's connections and what they carried. The
// totals cover the connections open now and those that have ended since
// the Server began, so they only grow: a metrics scrape can export them as
// counters with no state of its own.
type ServerStats struct {
	// Open counts connections from their accepted handshake until they
	// end: their handler returned and the connection is closed.
	Open int
	// Ended counts the connections that have ended.
	Ended uint64
	// Totals of ConnStats over open and ended connections.
	MessagesIn, MessagesOut uint64
	BytesIn, BytesOut       uint64
}

func (st *ServerStats) add(cs ConnStats) {
	st.MessagesIn += cs.MessagesIn
	st.MessagesOut += cs.MessagesOut
	st.BytesIn += cs.BytesIn
	st.BytesOut += cs.BytesOut
}

// Stats returns the Server's counts. It reads every open connection's
// counters, under the lock that handshakes and ends take, so it costs a
// few nanoseconds per open connection: call it per scrape, not per message.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ended
	st.Open = len(s.conns)
	for c := range s.conns {
		st.add(c.Stats())
	}
	return st
}
