// Package websocket implements the WebSocket protocol (RFC 6455), server and
// client, native to net/http.
//
// A server opens a WebSocket inside any http.Handler and talks to it in a
// loop, as the Falcon guide's chat does; a normal close by the peer ends the
// loop quietly:
//
//	func connect(w http.ResponseWriter, r *http.Request) {
//		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
//			for {
//				msg, err := c.Read(ctx)
//				if err != nil {
//					return err
//				}
//				c.SendText(msg.Data) // buffered
//				if err := c.Flush(); err != nil {
//					return err
//				}
//			}
//		})
//	}
//
// A client dials a ws:// or wss:// URL:
//
//	c, _, err := websocket.Dial(ctx, "ws://localhost:9292/chat/connect", nil)
//	if err != nil {
//		return err
//	}
//	defer c.CloseNow()
//	err = c.Write(ctx, websocket.MessageText, []byte(`{"text":"hi"}`))
//
// The package is strict where RFC 6455 is: frames are checked as they
// arrive, text is validated as UTF-8 as it is read (failing on the first
// invalid byte), and every violation closes the connection with the code the
// RFC names. Every limit has a default: 16 MiB per message, 10 s per write,
// 5 s for the closing handshake.
//
// Writes are safe from many goroutines; one goroutine reads, and its reads
// also answer pings and the peer's close. Idle connections hold no pooled
// buffers: a connection waiting for a message costs its goroutine and about
// one kilobyte.
//
// For fan-out, NewPreparedMessage frames a message once (and, for peers
// without context takeover, compresses it once) for any number of
// connections, and ReadInto reads into a buffer the caller reuses, so that
// a relay allocates nothing per message.
//
// WebSockets also run over HTTP/2 (RFC 8441), many on one connection. Open
// and Accept take an extended CONNECT on an HTTP/2 stream, which net/http's
// server allows only when the program runs with GODEBUG=http2xconnect=1 or
// imports package http2xconnect. Dial uses HTTP/2 for wss:// when the server
// offers it and HTTP/1.1 otherwise (DialOptions.HTTPVersion forces either).
package websocket
