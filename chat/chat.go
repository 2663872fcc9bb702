package chat

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// ReadLimit is the largest message /chat/connect accepts, in bytes. A bigger
// message closes the connection with 1009 (message too big).
const ReadLimit = 64 << 10

// Options configures a chat [Server]. The zero value is ready to use.
type Options struct {
	// OriginPatterns lists the origins, besides the page's own host, whose
	// pages may open /chat/connect: path.Match patterns on the origin's host
	// ("*.example.com") or on scheme://host ("http://localhost:*").
	OriginPatterns []string

	// PingInterval, when positive, makes the server ping every connection at
	// this interval and close the ones whose pong does not come back, so that
	// dead peers and idle-killing proxies are noticed.
	PingInterval time.Duration

	// PongTimeout is how long a pong may take before the connection is
	// closed; 0 means PingInterval.
	PongTimeout time.Duration

	// ShutdownCode is the close code [Server.Shutdown] sends: 0 means
	// websocket.StatusGoingAway (1001, reason "going away");
	// websocket.StatusServiceRestart (1012, reason "service restart") tells
	// the pages that the server restarts.
	ShutdownCode websocket.StatusCode

	// DrainWindow, when positive, spreads the close frames of
	// [Server.Shutdown] evenly over this long, so that the pages do not all
	// reconnect at once.
	DrainWindow time.Duration

	// Logger receives one line when a connection opens and one when it closes.
	// Nil discards them.
	Logger *slog.Logger

	// Broker carries the rooms of the multi-user chat; nil keeps them in
	// this process (hub.NewMemoryBroker).
	Broker hub.Broker

	// MaxConnections, when positive, caps the WebSockets of both
	// endpoints and the rooms' event streams together (/chat/connect,
	// /chat/hub and /chat/rooms/{room}/events), as websocket.Server's
	// MaxConnections does: one more is refused before its upgrade with 503
	// and Retry-After.
	MaxConnections int

	// HandshakeRate, when set, limits how fast each client address may
	// open WebSockets and event streams, on both endpoints together (see
	// websocket.HandshakeRate): one over it is refused with 429 and
	// Retry-After.
	HandshakeRate *websocket.HandshakeRate

	// HandshakeTimeout bounds writing a handshake's response; 0 means
	// websocket.DefaultHandshakeTimeout. Reading the request is the HTTP
	// server's to bound (http.Server.ReadHeaderTimeout): set both alike.
	HandshakeTimeout time.Duration

	// Hooks, when set, gives the hooks that observe an endpoint's
	// WebSockets (see websocket.ServerHooks): New calls it once for
	// EndpointEcho and once for EndpointHub.
	Hooks func(endpoint string) websocket.ServerHooks

	// ObservePublish is the hub's: see hub.Options.
	ObservePublish func(room string, took time.Duration, err error)

	// EventLoop serves /chat/hub's WebSockets from websocket's event loop,
	// as hub.Options.EventLoop says; /chat/connect keeps a goroutine per
	// connection.
	EventLoop bool
}

// The chat's WebSocket endpoints, as Options.Hooks names them.
const (
	EndpointEcho = "echo" // /chat/connect, the guide's echo
	EndpointHub  = "hub"  // /chat/hub, the multi-user chat's hub
)

// Server serves the chat: GET / (a redirect to the page), the multi-user
// chat at GET /chat/index?room=NAME on the hub's WebSocket endpoint
// /chat/hub and its event streams /chat/rooms/{room}/events, and the
// guide's echo page GET /chat/echo on the WebSocket endpoint /chat/connect.
// Its WebSockets are tracked (by a [websocket.Server] and the [hub.Hub]),
// so that [Server.Shutdown] can close them.
type Server struct {
	mux     *http.ServeMux
	log     *slog.Logger
	ws      websocket.Server
	hub     *hub.Hub
	closing atomic.Bool // Shutdown was called: a close with ws.ShutdownCode was ours
}

// shutdownReason is the reason sent beside a shutdown close code.
func shutdownReason(code websocket.StatusCode) string {
	switch code {
	case websocket.StatusGoingAway:
		return "going away"
	case websocket.StatusServiceRestart:
		return "service restart"
	}
	return "server shutting down"
}

// New returns a chat server configured by opts.
func New(opts Options) *Server {
	s := &Server{
		mux: http.NewServeMux(),
		log: opts.Logger,
		ws: websocket.Server{
			Options: websocket.AcceptOptions{
				OriginPatterns:   append([]string(nil), opts.OriginPatterns...),
				HandshakeTimeout: opts.HandshakeTimeout,
				Options: websocket.Options{
					ReadLimit:    ReadLimit,
					PingInterval: opts.PingInterval,
					PongTimeout:  opts.PongTimeout,
				},
			},
			ShutdownCode: opts.ShutdownCode,
			DrainWindow:  opts.DrainWindow,
		},
	}
	if s.ws.ShutdownCode == 0 {
		s.ws.ShutdownCode = websocket.StatusGoingAway
	}
	var limit *websocket.ConnLimit
	if opts.MaxConnections > 0 {
		// One limit for both endpoints: it protects what the process has
		// (file descriptors, memory), whichever endpoint uses it.
		limit = &websocket.ConnLimit{Max: opts.MaxConnections}
	}
	s.ws.Limit = limit
	s.ws.HandshakeRate = opts.HandshakeRate
	var hubHooks websocket.ServerHooks
	if opts.Hooks != nil {
		s.ws.Hooks = opts.Hooks(EndpointEcho)
		hubHooks = opts.Hooks(EndpointHub)
	}
	// Set here, so that the log can say what was sent: the peer's echo of
	// the close frame carries only the code.
	s.ws.ShutdownReason = shutdownReason(s.ws.ShutdownCode)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/chat/index", http.StatusFound)
	})
	s.hub = newHub(opts, limit, hubHooks)
	s.mux.HandleFunc("GET /chat/index", serveStatic("room.html"))
	s.mux.HandleFunc("GET /chat/room.js", serveStatic("room.js"))
	s.mux.HandleFunc("GET /chat/room.css", serveStatic("room.css"))
	s.mux.Handle("GET /chat/duplex.js", hub.ClientScript())
	s.mux.Handle("/chat/hub", s.hub)
	s.mux.HandleFunc("GET /chat/rooms/{room}/events", func(w http.ResponseWriter, r *http.Request) {
		s.hub.ServeEvents(w, r, r.PathValue("room"))
	})
	s.mux.HandleFunc("GET /chat/echo", serveStatic("index.html"))
	s.mux.HandleFunc("GET /chat/chat.js", serveStatic("chat.js"))
	s.mux.HandleFunc("GET /chat/chat.css", serveStatic("chat.css"))
	// No method in the pattern: websocket.Open answers anything but GET with 405.
	s.mux.HandleFunc("/chat/connect", s.connect)
	return s
}

// ServeHTTP implements [http.Handler].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// Connections returns how many WebSocket connections are open.
func (s *Server) Connections() int {
	return s.ws.Len() + s.hub.Stats().Connections
}

// Stats is a snapshot of the chat's counters, per endpoint.
type Stats struct {
	Echo websocket.ServerStats // /chat/connect
	Hub  hub.Stats             // /chat/hub (its WebSocket field counts the connections) and its rooms
}

// Stats returns the chat's counters. It reads every open connection's
// counters: call it per scrape, not per message.
func (s *Server) Stats() Stats {
	return Stats{Echo: s.ws.Stats(), Hub: s.hub.Stats()}
}

// Ready reports whether the chat can serve, for a readiness probe: nil
// until Shutdown is called, as long as the hub's broker is usable.
func (s *Server) Ready(ctx context.Context) error {
	if s.closing.Load() {
		return errShuttingDown
	}
	return s.hub.Ready(ctx)
}

var errShuttingDown = errors.New("chat: shutting down")

// Hub returns the hub behind the multi-user chat, for the server's own
// publishes and its statistics.
func (s *Server) Hub() *hub.Hub { return s.hub }

// Shutdown closes every WebSocket connection with Options.ShutdownCode (1001
// "going away" by default), spread over Options.DrainWindow, refuses new ones
// with 503, and waits for their handlers to end. When ctx ends first, it
// drops the remaining connections without a closing handshake and returns
// ctx's error. It may be called more than once, concurrently. Shutdown does
// not stop the HTTP listener: run it beside [http.Server.Shutdown], as
// [websocket.Server] shows.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	// The echo endpoint and the hub drain side by side: each spreads its
	// closes over the drain window.
	hubDone := make(chan error, 1)
	go func() { hubDone <- s.hub.Shutdown(ctx) }()
	err := s.ws.Shutdown(ctx)
	if herr := <-hubDone; err == nil {
		err = herr
	}
	if err != nil {
		s.log.Warn("shutdown deadline passed: websocket connections dropped without a closing handshake", "error", err)
	}
	return err
}
