package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/hub/natsbroker"
)

// brokerOptions say where the chat's rooms live (flags -broker, -data-dir,
// -nats-url, -nats-listen).
type brokerOptions struct {
	kind    string // "nats" (the default) or "memory"
	dataDir string // the embedded NATS server's file store is dataDir/nats
	url     string // an external NATS system instead of the embedded server
	listen  string // the embedded server also serves NATS clients here
}

// defaultDataDir is -data-dir's default: a directory beside where duplex is
// started, where its owner sees it, not a temporary one that a reboot empties.
const defaultDataDir = "duplex-data"

// openBroker starts what the rooms need and returns the broker for the chat
// (nil: the hub's memory broker) and the function that stops it, to run
// once the hub has shut down.
func openBroker(ctx context.Context, opts brokerOptions, logger *slog.Logger) (hub.Broker, func(), error) {
	if opts.kind == "memory" {
		logger.Info("rooms in memory: history is lost when the process stops")
		return nil, func() {}, nil
	}
	var (
		nc   *nats.Conn
		srv  *natsbroker.Server
		err  error
		stop []func()
	)
	undo := func() {
		for i := len(stop) - 1; i >= 0; i-- {
			stop[i]()
		}
	}
	if opts.url != "" {
		if nc, err = natsbroker.Connect(opts.url); err != nil {
			return nil, nil, fmt.Errorf("-nats-url %s: %w", opts.url, err)
		}
		stop = append(stop, nc.Close)
		logger.Info("rooms on an external NATS system", "url", opts.url)
	} else {
		dir, err := filepath.Abs(filepath.Join(opts.dataDir, "nats"))
		if err != nil {
			return nil, nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("-data-dir: %w", err)
		}
		if srv, err = natsbroker.StartServer(natsbroker.ServerOptions{Dir: dir, Listen: opts.listen}); err != nil {
			return nil, nil, fmt.Errorf("embedded NATS server: %w", err)
		}
		stop = append(stop, srv.Shutdown)
		if nc, err = srv.Connect(); err != nil {
			undo()
			return nil, nil, fmt.Errorf("embedded NATS server: %w", err)
		}
		stop = append(stop, nc.Close)
		attrs := []any{"data_dir", dir}
		if opts.listen != "" {
			attrs = append(attrs, "nats_clients", srv.ClientURL())
		}
		logger.Info("rooms on the embedded NATS server (JetStream, file store)", attrs...)
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := natsbroker.New(bctx, nc, natsbroker.Options{})
	if err != nil {
		undo()
		return nil, nil, fmt.Errorf("NATS broker: %w", err)
	}
	stop = append(stop, func() { b.Close() })
	return b, undo, nil
}
