package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/chat"
)

const (
	// shutdownTimeout bounds the graceful shutdown: closing handshakes and
	// in-flight requests get this long before connections are dropped.
	shutdownTimeout = 10 * time.Second
	// pingInterval keeps idle WebSockets alive through proxies and finds dead peers.
	pingInterval = 30 * time.Second
	// maxHeaderBytes bounds a request's header (net/http allows 4 KiB
	// more): a WebSocket handshake with its cookies fits in a few KiB, and
	// a bigger header gets 431 before any handler runs, as soon as it is
	// read.
	maxHeaderBytes = 16 << 10
)

// testHookBeforeDrain, when set by a test, runs in the shutdown path once
// the server is not ready and before any WebSocket is sent its close frame.
var testHookBeforeDrain func()

// run serves until ctx is cancelled, then shuts down gracefully and returns
// nil. It logs to stdout. It returns an error when the configuration is bad or
// the server cannot listen.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := parseConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: cfg.logLevel}))

	rooms, err := openBroker(ctx, cfg.broker, logger) // broker.go
	if err != nil {
		return err
	}
	// Deferred: it runs after the shutdown below, once the hub has let go.
	defer rooms.stop()

	m := newMetrics()
	chatServer := chat.New(chat.Options{
		Broker:           rooms.broker,
		OriginPatterns:   cfg.allowedOrigins,
		PingInterval:     pingInterval,
		ShutdownCode:     cfg.shutdownCode,
		DrainWindow:      cfg.drain,
		Logger:           logger,
		MaxConnections:   cfg.maxConns,
		HandshakeRate:    handshakeRate(cfg.handshake), // clientaddr.go
		HandshakeTimeout: cfg.handshake.timeout,
		Hooks:            m.hooks,
		ObservePublish:   m.observePublish,
		EventLoop:        cfg.eventLoop,
	})
	m.watch(chatServer)

	// ready is true while the server takes new connections. The shutdown
	// sets it false before anything else, so that /readyz says 503 before
	// the first WebSocket is sent its close frame.
	var ready atomic.Bool
	ready.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "shutting down\n")
			return
		}
		err := rooms.ready(r.Context())
		if err == nil {
			err = chatServer.Ready(r.Context())
		}
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, err.Error()+"\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", m.handler())
	mux.Handle("/", chatServer)

	srv := &http.Server{
		Handler: logRequests(logger, mux),
		// The same bound as the WebSocket handshake's response: a client
		// that trickles its request header, or its TLS handshake, is cut
		// after it (slowloris_test.go).
		ReadHeaderTimeout: cfg.handshake.timeout,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: they would cut long-lived WebSockets.
	}
	scheme, err := setupTLS(srv, cfg.tls, logger) // tls.go
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "allowed_origins", cfg.allowedOrigins,
		"shutdown_code", int(cfg.shutdownCode), "drain", cfg.drain, "max_connections", cfg.maxConns,
		"handshake_timeout", cfg.handshake.timeout, "handshake_rate", cfg.handshake.rate, "event_loop", cfg.eventLoop)

	serveErr := make(chan error, 1)
	go func() { serveErr <- serve(srv, ln) }()

	select {
	case err := <-serveErr:
		// Serve failed on its own; close what is open and report it.
		ready.Store(false)
		shutdown(logger, srv, chatServer, 0)
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	ready.Store(false) // first: /readyz says 503 before any close frame goes out
	logger.Info("shutting down", "timeout", shutdownTimeout, "websockets", chatServer.Connections())
	rooms.handOver() // before the clients go: they reconnect to nodes that lead
	if testHookBeforeDrain != nil {
		testHookBeforeDrain()
	}
	shutdown(logger, srv, chatServer, cfg.drain)
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// shutdown closes the WebSockets and then the HTTP server, bounded together
// by shutdownTimeout; when it passes, what remains is dropped.
//
// The WebSockets' drain (chat.Server.Shutdown: close frames spread over
// drain) starts first, while the listener still accepts: during the drain
// /readyz answers 503, so that a load balancer takes the server out, and a
// client that reconnects here gets 503 with Retry-After rather than a
// refused connection. Once every close frame is sent (the drain window
// passed) or every WebSocket ended, http.Server.Shutdown stops the listener
// and waits for the HTTP requests and HTTP/2 streams, which include the
// WebSockets over HTTP/2 (it does not close WebSockets itself).
func shutdown(logger *slog.Logger, srv *http.Server, chatServer *chat.Server, drain time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		chatServer.Shutdown(ctx) // logs when it had to drop connections
	}()
	if drain > 0 {
		t := time.NewTimer(drain)
		select {
		case <-drained:
		case <-t.C:
		}
		t.Stop()
	}
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("http shutdown incomplete", "error", err)
		srv.Close()
	}
	<-drained
}
