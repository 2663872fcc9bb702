package chat

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

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

	// Logger receives one line when a connection opens and one when it closes.
	// Nil discards them.
	Logger *slog.Logger
}

// Server serves the chat: GET / (a redirect to the page), GET /chat/index,
// its static files, and the WebSocket endpoint /chat/connect.
// It tracks its live connections so that [Server.Shutdown] can close them.
type Server struct {
	mux    *http.ServeMux
	log    *slog.Logger
	accept websocket.AcceptOptions

	mu      sync.Mutex
	closing bool
	conns   map[*liveConn]struct{}
	wg      sync.WaitGroup // one per /chat/connect request in flight
}

// liveConn is one /chat/connect request, from before its handshake to the end
// of its handler.
type liveConn struct {
	cancel context.CancelFunc // cancels the request context: Open then closes with 1001
	conn   *websocket.Conn    // set once the handshake is done; guarded by Server.mu
}

// New returns a chat server configured by opts.
func New(opts Options) *Server {
	s := &Server{
		mux:   http.NewServeMux(),
		log:   opts.Logger,
		conns: make(map[*liveConn]struct{}),
		accept: websocket.AcceptOptions{
			OriginPatterns: append([]string(nil), opts.OriginPatterns...),
			Options: websocket.Options{
				ReadLimit:    ReadLimit,
				PingInterval: opts.PingInterval,
				PongTimeout:  opts.PongTimeout,
			},
		},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/chat/index", http.StatusFound)
	})
	s.mux.HandleFunc("GET /chat/index", serveStatic("index.html"))
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

// Connections returns how many WebSocket connections are open or opening.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown closes every WebSocket connection with 1001 "going away", refuses
// new ones with 503, and waits for their handlers to end. When ctx ends first,
// it drops the remaining connections without a closing handshake and returns
// ctx's error. Shutdown does not stop the HTTP listener: call
// [http.Server.Shutdown] beside it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for lc := range s.conns {
		lc.cancel()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}

	s.mu.Lock()
	n := 0
	for lc := range s.conns {
		if lc.conn != nil {
			lc.conn.CloseNow()
			n++
		}
	}
	s.mu.Unlock()
	s.log.Warn("shutdown deadline passed, dropping websocket connections", "count", n)
	// The handlers end quickly once their TCP connections are gone; wait a
	// little for them so that their last log lines are written.
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return ctx.Err()
}

// track registers a /chat/connect request; false when shutting down.
func (s *Server) track(lc *liveConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[lc] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(lc *liveConn) {
	s.mu.Lock()
	delete(s.conns, lc)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) setConn(lc *liveConn, c *websocket.Conn) {
	s.mu.Lock()
	lc.conn = c
	s.mu.Unlock()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
