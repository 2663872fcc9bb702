// Package websocket implements the WebSocket protocol (RFC 6455), server and
// client, native to net/http.
//
// A server opens a WebSocket inside any http.Handler and talks to it in a
// loop, as the Falcon guide's chat does; a normal close by the peer ends the
// loop quietly. ReadInto reads each message into the buffer the last one
// used, so the loop allocates nothing per message; Read returns a message
// whose data the caller keeps, at the cost of an allocation each.
// MessageReady tells whether the next message has arrived already, so that
// the answers to messages that came together go out in one write:
//
//	func connect(w http.ResponseWriter, r *http.Request) {
//		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
//			var buf []byte // reused for every message
//			for {
//				msg, err := c.ReadInto(ctx, buf)
//				if err != nil {
//					return err
//				}
//				buf = msg.Data // overwritten by the next ReadInto
//				c.SendText(msg.Data) // buffered
//				if c.MessageReady() {
//					continue // answer what has arrived, then write once
//				}
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
// Beyond messages: ReadJSON, WriteJSON and SendJSON speak JSON, as the
// guide's chat does; CloseRead keeps a connection that only writes
// answering pings and noticing the peer's close; NetConn turns a connection
// into a net.Conn for byte-stream protocols.
//
// The package is strict where RFC 6455 is: frames are checked as they
// arrive, text is validated as UTF-8 as it is read (failing on the first
// invalid byte), and every violation closes the connection with the code the
// RFC names. Every limit has a default: 16 MiB per message, 10 s per write,
// 5 s for the closing handshake.
//
// Writes are safe from many goroutines; one goroutine reads, and its reads
// also answer pings and the peer's close. A context given to a call bounds
// that call only.
//
// Servers that must close their WebSockets when they stop (http.Server's
// Shutdown does not) serve them with a Server: it counts and lists the live
// connections and its Shutdown closes them with 1001, or 1012 for a
// restart, spread over a drain window if asked.
//
// For operations, without a metrics library: Conn.Stats counts a
// connection's messages and wire bytes each way and records the close codes
// sent and received; Server.Stats adds them up over the open and the ended
// connections, so that a scrape exports them as counters; Server.Hooks
// reports each handshake (accepted or refused, HTTP/1.1 or HTTP/2, status,
// duration) and each connection's end (close codes, who closed, duration,
// final counts). Server.MaxConnections (or a ConnLimit shared by several
// Servers) caps the connections, refusing the one over the cap with 503 and
// Retry-After before its upgrade; Server.HandshakeRate limits how fast each
// client address may open them, refusing with 429 and Retry-After.
//
// For fan-out, NewPreparedMessage frames a message once (and, for peers
// without context takeover, compresses it once) for any number of
// connections, and ReadInto reads into a buffer the caller reuses, so that
// a relay allocates nothing per message. A publisher can queue it on each
// subscriber (SendPrepared) and flush that subscriber at once with
// TryFlush, which never waits: the subscribers it reports not done (a slow
// reader) are left to a goroutine that calls Flush, and none holds up the
// others. When nothing else is waiting to be sent, queue and flush one
// subscriber after another rather than queue on all, then flush all: a
// connection holds a pooled write buffer (8 KiB) from its first queued
// message until it is flushed, so one pass keeps one buffer busy where two
// keep one per subscriber, 80 MB for 10,000. When further messages are
// waiting, queuing them all before flushing sends each subscriber several
// in one write.
//
// WebSockets also run over HTTP/2 (RFC 8441), many on one connection. Open
// and Accept take an extended CONNECT on an HTTP/2 stream, which net/http's
// server allows only when the program runs with GODEBUG=http2xconnect=1 or
// imports package http2xconnect (Go 1.26 has no other switch). Dial uses
// HTTP/2 for wss:// when the server offers it and HTTP/1.1 otherwise
// (DialOptions.HTTPVersion forces either). Both transports behave the same:
// the same close codes, limits and cancellation.
//
// # What a connection costs
//
// Goroutines per idle connection on the server, as
// TestGoroutinesPerIdleConnection measures them: with Open, 1 over
// HTTP/1.1 (net/http's connection goroutine runs the handler) and 1 over
// HTTP/2 (net/http's stream goroutine runs it); with Accept and a reading
// goroutine of the caller's, 1 over HTTP/1.1 (net/http's goroutine returns)
// and 2 over HTTP/2 (the stream lives as long as its handler, which must
// wait). Keepalive adds none: one goroutine per process schedules the pings
// of every connection. Over HTTP/2 a Read under a context that can end,
// other than the one Open gives the handler, keeps one more goroutine
// reading the stream while it waits, so that cancelling it leaves the
// connection usable.
//
// Goroutines per idle connection on the client, from Dial, as
// TestClientGoroutinesPerIdleConnection measures them, a goroutine of the
// caller's that reads the connection included: over HTTP/1.1, 0 when
// nothing reads and 1 (the caller's) when a goroutine reads, whatever its
// context; the package adds none. Over HTTP/2, one more: net/http's
// goroutine that writes the extended CONNECT's request body, the stream's
// outgoing half, for as long as the connection lives. That is 1 when
// nothing reads, 2 when a goroutine reads under a context that cannot end
// (context.Background), and 3 under one that can, for the read-ahead
// goroutine above. WebSockets to one host share an HTTP/2 connection, whose
// frame-reading goroutine is counted once, not per WebSocket. Keepalive adds
// none on the client either.
//
// AcceptEvents is for servers with many idle connections (notifications,
// dashboards, subscribers): on Linux, over HTTP/1.1 without TLS, a
// connection waiting for its next message has no goroutine at all. It waits
// in an event loop, a few epoll instances (GOMAXPROCS of them) each watched
// by one goroutine while it has connections, and its messages go to
// callbacks (Events) that a pool of goroutines runs, started as messages
// come and ended when none wait. TestEventsIdleHoldsNothing measures it:
// 1000 idle connections, the pollers' goroutines and none more, and no
// buffer. A message partly in holds its buffer until it is whole. The
// handshake is Accept's, in any net/http handler; over TLS and HTTP/2, and
// on other platforms, each connection has a reading goroutine instead,
// with the same callbacks (over HTTP/2 the handler's: AcceptEvents returns
// when the connection ends). Over TCP on Linux the connection keeps only its
// socket's descriptor: package net's connection, with its addresses, its
// finalizer and the runtime poller's record of the socket (about 0.6 KiB,
// part of it outside the heap), is closed once the handshake is done, and
// a write that must wait for room in the socket's buffer is woken by the
// loop's own epoll set. What the Conn itself costs stays: bench/'s idle
// scenario measures memory per connection for Open, Accept and AcceptEvents
// (duplex's -variant accept and events).
//
// An idle connection holds no pooled buffer: buffers and (de)compressors
// are taken while a message is in flight. Memory per idle connection on the
// server over HTTP/1.1, as TestIdleConnectionCost measures it (live heap and
// stacks after a collection, 1000 connections, Go 1.26 on linux/amd64):
//
//   - Accept and a reading goroutine: the goroutine's stack, 2 KiB, the
//     runtime's smallest (Read waits for a message near the top of its call
//     chain so that a waiting reader fits in it), and 1.2 KiB of heap: the
//     Conn (384 bytes; a subprotocol, Open's context and keepalive live in
//     a second, small object only the connections that have them make),
//     the socket and what package net keeps for it, the goroutine's
//     descriptor. The channels that tell of a close, the Ping
//     bookkeeping, the keepalive state, the watchers that let a context
//     end a blocked read or write, and a write's buffers are made only when
//     used (or taken from a pool while a write runs). A plain TCP server
//     with a goroutine per connection keeps 2 KiB of stack and 0.8 KiB of
//     heap.
//   - AcceptEvents: no stack, 0.63 KiB of heap: the Conn, its events
//     state and the socket's descriptor.
//   - Open: the handler runs in net/http's goroutine, the connection's only
//     one, but that goroutine's stack, which net/http's call chain keeps at
//     4 KiB (a handler waiting in Read uses 2.6 KiB of it, 1.1 KiB of that
//     net/http's own conn.serve frame, and the runtime halves a stack only
//     when less than a quarter of it is used; Accept's reading goroutine
//     uses 0.8 KiB), and net/http's connection, request, response and contexts
//     (2.5 KiB of heap beyond Accept's) stay for the connection's life:
//     8 KiB in all, against Accept's 3.3 KiB. Open empties the
//     two 4 KiB bufio buffers that net/http hands over with the connection;
//     the rest it cannot drop while it blocks, and it blocks by design: the
//     handler runs in net/http's goroutine, and over HTTP/2 the stream lives
//     only as long as that. For many idle connections, use AcceptEvents, or
//     Accept and a goroutine of your own.
//
// A process's resident memory is more than that: with GOGC=100 the heap
// may grow to twice what is live before a collection, and each handshake
// leaves about 12 KiB of garbage, 8 KiB of it net/http's bufio buffers,
// which a hijacked connection never gives back to net/http's pool. Nor
// does the first collection after a burst of handshakes return it to the
// OS: the scavenger keeps 1.1 times the heap in use at that collection's
// mark termination, before its sweep; the second lets it go. The benchmark
// harness (bench/, the idle and deflate-idle scenarios) measures resident
// memory per idle connection beside the peer libraries'; at 19,000
// connections, right after the handshakes: AcceptEvents 1.61 KiB, Accept
// and a goroutine 6.04 KiB, Open 10.6 KiB, the plain TCP server with a
// goroutine per connection 3.53 KiB, and a bare net/http server that
// hijacks and parks a goroutine, no WebSocket library, 4.82 KiB; after the
// two collections the runtime runs in four idle minutes: 0.90, 4.23, 9.21,
// 3.55 and 3.68 KiB (nbio, an event loop of its own with its own HTTP
// parser: 0.98).
// The figures are in bench/results/REPORT.md, section "Memory per idle
// connection", and bench/results/followup/deflate-memory.md.
package websocket
