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

	// A cluster of embedded servers (flags -nats-cluster, -nats-routes,
	// -nats-name, -nats-replicas).
	clusterListen string   // this node's route address; set: clustered
	routes        []string // every node's route address
	name          string   // this node's server name, unique in the cluster
	replicas      int      // of the rooms' stream: 1, or 3 in a cluster
}

// clusterName is the NATS cluster's name: every duplex node of a cluster has
// the same.
const clusterName = "duplex"

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
		so := natsbroker.ServerOptions{Dir: dir, Listen: opts.listen}
		if opts.clusterListen != "" {
			so.Cluster, so.ClusterListen, so.Routes, so.Name = clusterName, opts.clusterListen, opts.routes, opts.name
			logger.Info("joining the NATS cluster", "name", opts.name, "cluster_listen", opts.clusterListen, "routes", opts.routes)
		}
		if srv, err = natsbroker.StartServer(so); err != nil {
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
	b, err := natsbroker.New(bctx, nc, natsbroker.Options{Replicas: opts.replicas})
	if err != nil {
		undo()
		return nil, nil, fmt.Errorf("NATS broker: %w", err)
	}
	stop = append(stop, func() { b.Close() })
	return b, undo, nil
}
