package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/duplexws/duplex/chat"
)

const (
	// shutdownTimeout bounds the graceful shutdown: closing handshakes and
	// in-flight requests get this long before connections are dropped.
	shutdownTimeout = 10 * time.Second
	// pingInterval keeps idle WebSockets alive through proxies and finds dead peers.
	pingInterval = 30 * time.Second
)

// run serves until ctx is cancelled, then shuts down gracefully and returns
// nil. It logs to stdout. It returns an error when the configuration is bad or
// the server cannot listen.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := parseConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: cfg.logLevel}))

	chatServer := chat.New(chat.Options{
		OriginPatterns: cfg.allowedOrigins,
		PingInterval:   pingInterval,
		ShutdownCode:   cfg.shutdownCode,
		DrainWindow:    cfg.drain,
		Logger:         logger,
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("/", chatServer)

	srv := &http.Server{
		Handler:           logRequests(logger, mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: they would cut long-lived WebSockets.
	}
	// http.Server.Shutdown does not close WebSockets, and over HTTP/2 it
	// waits for their streams: it must start their drain as it begins.
	srv.RegisterOnShutdown(func() { chatServer.Shutdown(context.Background()) })
	scheme, err := setupTLS(srv, cfg.tls, logger) // tls.go
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "allowed_origins", cfg.allowedOrigins,
		"shutdown_code", int(cfg.shutdownCode), "drain", cfg.drain)

	serveErr := make(chan error, 1)
	go func() { serveErr <- serve(srv, ln) }()

	select {
	case err := <-serveErr:
		// Serve failed on its own; close what is open and report it.
		shutdown(logger, srv, chatServer)
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", "timeout", shutdownTimeout, "websockets", chatServer.Connections())
	shutdown(logger, srv, chatServer)
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// shutdown stops the listener and waits for HTTP requests and HTTP/2 streams
// (http.Server.Shutdown, which starts the WebSockets' drain through
// RegisterOnShutdown), then waits for the WebSocket handlers
// (chat.Server.Shutdown). Both are bounded together by shutdownTimeout; when
// it passes, what remains is dropped.
func shutdown(logger *slog.Logger, srv *http.Server, chatServer *chat.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("http shutdown incomplete", "error", err)
		srv.Close()
	}
	chatServer.Shutdown(ctx) // logs when it had to drop connections
}
