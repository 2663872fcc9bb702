package websocket

import (
	"context"
	"errors"
	"time"
)

// CloseRead is for a connection whose application only writes, such as a
// server pushing updates. Control frames are read only while a goroutine
// reads, so without one the peer's pings go unanswered, Ping and keepalive
// never see a pong, and the peer's close frame is never noticed. CloseRead
// starts that goroutine: it answers pings, delivers pongs and handles the
// peer's close, and it treats a data message as a breach of the contract,
// failing the connection with close code 1008 (policy violation).
//
// The returned context is done when reading ends: when the connection
// closes, for whatever reason, or when ctx is done. Write with it, so that
// a push loop stops once the peer is gone. context.Cause of the returned
// context says why: the *CloseError that ended the connection (a 1000 or
// 1001 from the peer matches io.EOF, as with Read), or ctx's cause. It
// carries ctx's values and deadline.
//
// ctx bounds the reading only. When it ends the goroutine stops and leaves
// the connection open but unread: close it, or read it again with Read.
// The goroutine also ends with the connection, so it never outlives it.
//
// Call CloseRead once, and do not call Read or Reader while its goroutine
// runs: the first data message would fail the connection either way.
func (c *Conn) CloseRead(ctx context.Context) context.Context {
	if c.ev != nil {
		return c.closeReadEvents(ctx) // read already, by the event loop
	}
	// The returned context is cancelled by the goroutine alone, not by
	// ctx directly, so that its cause is the error that ended reading even
	// when ctx ends with the connection, as Open's context does.
	done, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	go func() {
		// Reader returns at the first data message; control frames before
		// it are handled inside, for as long as the connection lasts.
		_, _, err := c.Reader(ctx)
		switch {
		case err == nil:
			// Close before cancelling, so that the peer learns why from
			// our 1008 rather than from whatever code the application
			// closes with once it sees the context done.
			ce := &CloseError{Code: StatusPolicyViolation, Reason: "unexpected data message"}
			c.Close(ce.Code, ce.Reason)
			err = ce
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			err = context.Cause(ctx)
		}
		cancel(err)
	}()
	return closeReadContext{Context: done, parent: ctx}
}

// closeReadContext reports the deadline of the context it ends with.
type closeReadContext struct {
	context.Context
	parent context.Context
}

func (c closeReadContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }
