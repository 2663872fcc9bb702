// Command duplex serves the chat of the Falcon "WebSockets" guide.
//
//	go run ./cmd/duplex                       # http://localhost:9292/
//	go run ./cmd/duplex -addr 127.0.0.1:8080 -log-level debug
//
// Every flag has an environment twin (DUPLEX_ADDR, DUPLEX_ALLOWED_ORIGINS,
// DUPLEX_LOG_LEVEL); a flag on the command line wins over its variable.
// SIGINT or SIGTERM shuts the server down gracefully: it stops accepting,
// closes every WebSocket with 1001 "going away", waits for the handlers (at
// most ten seconds) and exits with status 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
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
