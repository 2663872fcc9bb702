// Package chat is the chat of the Falcon "WebSockets" guide, served by Duplex,
// in two forms.
//
// The multi-user chat, at /chat/index?room=NAME (room "lobby" by default):
// people in a room see each other's messages and who is present, the page
// shows the room's recent history on join and, after a reconnect, exactly
// what it missed. It runs on package hub: the page speaks the hub's protocol
// through its JavaScript client (/chat/duplex.js) to /chat/hub, and a room's
// messages are also a Server-Sent Events stream at /chat/rooms/{room}/events.
//
// The guide's own echo, unchanged: a page at /chat/echo whose script sends
// {"text": ...} over a WebSocket to /chat/connect, and an endpoint that
// answers every message with {"text": "Echo: ..."}.
//
// The page and its script are static files embedded in the binary; the script
// reconnects with exponential backoff and full jitter and shows its connection
// status. The endpoint keeps a connection open when a message is not what it
// expects and answers {"error": ...} instead.
//
// The smallest use:
//
//	srv := chat.New(chat.Options{})
//	http.ListenAndServe(":9292", srv)
//
// A server that shuts down gracefully calls [Server.Shutdown] beside
// [http.Server.Shutdown]: http.Server does not close WebSockets, so it is
// Server.Shutdown, through the [websocket.Server] that tracks them, that
// closes every WebSocket with 1001 "going away" (or Options.ShutdownCode,
// spread over Options.DrainWindow) and waits for the handlers to end.
package chat
