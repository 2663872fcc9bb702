// Package hub serves rooms of real-time messages to WebSocket clients: fan-out,
// history, recovery after a reconnect, presence, and a policy for clients
// that read too slowly. It speaks a small JSON protocol over one WebSocket per
// client (PROTOCOL.md in this directory), for which it ships a JavaScript
// client (ClientScript), and also serves a room as Server-Sent Events.
//
// The smallest use, a hub in one process:
//
//	h := hub.New(hub.Options{})
//	http.Handle("/hub", h)                      // the WebSocket endpoint
//	http.Handle("/hub.js", hub.ClientScript())  // import { Client } from "/hub.js"
//	...
//	h.Publish(ctx, "lobby", json.RawMessage(`{"text":"hello"}`))
//
// # Rooms and positions
//
// A room is an ordered log. Publishing appends and returns a Position: an
// offset that increases in the room, and an epoch that names one unbroken
// history of it. A client that comes back with the last position it saw gets
// exactly the publications it missed, then live ones, with no gap and no
// duplicate; or, when the history can no longer vouch for that position
// (trimmed by count or age, lost, reset, or more missed than MaxRecover), it
// is told "recovered": false and gets none of the old ones. Recovery is never
// partial.
//
// # Fan-out and slow clients
//
// A publication is encoded once and framed once (websocket.PreparedMessage)
// for all the subscribers of a room on this hub, and compressed once when
// the connections compress without context takeover (the hub's default).
// Each connection has a bounded queue (1 MiB and 4096 messages by default);
// publishing never waits for a client. The clients a publication finds with
// nothing queued are written to 64 at a time by one goroutine, with writes
// that never wait; what a client cannot take at once goes on from a writer
// goroutine of its own. A client whose queue overflows is
// closed with CloseSlowConsumer (4008), which tells it to reconnect and
// recover; Stats counts them.
//
// # Many idle clients
//
// By default each WebSocket client has a goroutine that reads its commands.
// With Options.EventLoop the hub takes them from websocket's event loop
// (websocket.Server.AcceptEvents) instead: on Linux over HTTP/1.1 without
// TLS, a client waiting for its next command holds no goroutine and no read
// buffer, and the writer of its queue exists only while something waits to
// be written, as in both modes. The protocol behaves the same either way.
//
// # Brokers
//
// Everything that crosses processes goes through a Broker: the log with its
// positions, live delivery, history and presence. NewMemoryBroker serves one
// process and is the default. A Broker may lose a live delivery on the way (a
// distributed one can): the hub notices from Publication.Prev, fills the gap
// from history, and when it cannot, closes the room's subscribers with
// CloseInsufficientState (4010) so that each recovers from its own position.
package hub
