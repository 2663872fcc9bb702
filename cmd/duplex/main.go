// Command duplex serves the chat of the Falcon "WebSockets" guide.
//
//	go run ./cmd/duplex                       # http://localhost:9292/
//	go run ./cmd/duplex -addr 127.0.0.1:8080 -log-level debug
//	go run ./cmd/duplex -tls                  # https://localhost:9292/, HTTP/2 and HTTP/1.1
//
// Every flag has an environment twin (DUPLEX_ADDR, DUPLEX_ALLOWED_ORIGINS,
// DUPLEX_LOG_LEVEL, DUPLEX_SHUTDOWN_CODE, DUPLEX_DRAIN,
// DUPLEX_MAX_CONNECTIONS, DUPLEX_TLS, DUPLEX_CERT, DUPLEX_KEY, DUPLEX_H2C);
// a flag on the command line wins over its variable.
//
// For operations the server answers GET /metrics (Prometheus: connections,
// handshakes, messages and bytes, close codes, the hub's rooms, queues and
// broker latency), GET /healthz (the process is up) and GET /readyz (200
// while it takes connections, 503 once it shuts down). -max-connections
// (10000 by default) caps the WebSockets of both endpoints together.
//
// With -tls the server speaks HTTPS, HTTP/2 and HTTP/1.1 chosen by ALPN,
// with the certificate of -cert and -key or a self-signed development
// certificate for localhost made at start. Browsers open the chat's
// WebSocket over HTTP/2 (RFC 8441): the binary turns on net/http's extended
// CONNECT itself, by importing websocket/http2xconnect.
// SIGINT or SIGTERM shuts the server down gracefully: /readyz turns to 503,
// every WebSocket is closed with 1001 "going away" (-shutdown-code
// service-restart: 1012), spread over -drain while the server still listens
// (a new WebSocket gets 503), then it stops listening, waits for the
// handlers (at most ten seconds in all) and exits with status 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	_ "github.com/duplexws/duplex/websocket/http2xconnect" // WebSockets over HTTP/2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default behaviour so that a
		// second Ctrl-C kills a shutdown that takes too long.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "duplex:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "duplex:", err)
		os.Exit(1)
	}
}
