package websocket

import "context"

// ReadInto reads the next whole message as Read does, into buf: the
// message's Data is append(buf[:0], message...), so it shares buf's backing
// array when the message fits in cap(buf), and is a new, larger slice
// otherwise. Passing the last Data back in makes a read loop (an echo, a
// relay) allocate nothing per message once buf has grown to the largest
// message:
//
//	var buf []byte
//	for {
//		msg, err := c.ReadInto(ctx, buf)
//		if err != nil {
//			return err
//		}
//		buf = msg.Data
//		...
//	}
//
// Data is overwritten by the next ReadInto with the same buf: copy what must
// outlive it, or use Read, whose Data belongs to the caller. Errors, close
// handling and cancellation are those of Read; on an error, buf may have
// been partly overwritten.
func (c *Conn) ReadInto(ctx context.Context, buf []byte) (Message, error) {
	if c.ev != nil {
		return Message{}, errEventsRead
	}
	return c.readWhole(ctx, buf)
}
