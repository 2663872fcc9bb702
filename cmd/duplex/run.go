package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
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
	scheme, err := setupTLS(srv, cfg.tls, logger) // tls.go
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "allowed_origins", cfg.allowedOrigins)

	serveErr := make(chan error, 1)
	go func() { serveErr <- serve(srv, ln) }()

	select {
	case err := <-serveErr:
		// Serve failed on its own; close what is open and report it.
		shutdown(logger, srv, chatServer)
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", "timeout", shutdownTimeout)
	shutdown(logger, srv, chatServer)
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// shutdown stops the listener and waits for HTTP requests (http.Server.Shutdown)
// while it closes the WebSockets with 1001 and waits for their handlers
// (chat.Server.Shutdown): http.Server forgets hijacked connections, so both
// are needed. Both run at once, bounded together by shutdownTimeout.
func shutdown(logger *slog.Logger, srv *http.Server, chatServer *chat.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := chatServer.Shutdown(ctx); err != nil {
			logger.Warn("websocket shutdown incomplete", "error", err)
		}
	})
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("http shutdown incomplete", "error", err)
		srv.Close()
	}
	wg.Wait()
}
