package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
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

// rooms is what openBroker started for the chat's rooms.
type rooms struct {
	broker hub.Broker // nil: the hub's memory broker
	// ready is the node's readiness beyond the broker's own (see caughtUp).
	ready func(context.Context) error
	// handOver runs when the node begins to shut down, before its clients
	// are let go: a node of a cluster of embedded servers hands the
	// leadership of its streams to the other nodes (natsbroker.Server.
	// HandOver), so that the clients that reconnect there find a leader.
	handOver func()
	// stop stops it all, once the hub has shut down.
	stop func()
}

// openBroker starts what the rooms need.
func openBroker(ctx context.Context, opts brokerOptions, logger *slog.Logger) (rooms, error) {
	r := rooms{ready: func(context.Context) error { return nil }, handOver: func() {}, stop: func() {}}
	if opts.kind == "memory" {
		logger.Info("rooms in memory: history is lost when the process stops")
		return r, nil
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
			return rooms{}, fmt.Errorf("-nats-url %s: %w", opts.url, err)
		}
		stop = append(stop, nc.Close)
		logger.Info("rooms on an external NATS system", "url", opts.url)
	} else {
		dir, err := filepath.Abs(filepath.Join(opts.dataDir, "nats"))
		if err != nil {
			return rooms{}, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return rooms{}, fmt.Errorf("-data-dir: %w", err)
		}
		so := natsbroker.ServerOptions{Dir: dir, Listen: opts.listen}
		if opts.clusterListen != "" {
			so.Cluster, so.ClusterListen, so.Routes, so.Name = clusterName, opts.clusterListen, opts.routes, opts.name
			logger.Info("joining the NATS cluster", "name", opts.name, "cluster_listen", opts.clusterListen, "routes", opts.routes)
		}
		if srv, err = natsbroker.StartServer(so); err != nil {
			return rooms{}, fmt.Errorf("embedded NATS server: %w", err)
		}
		stop = append(stop, srv.Shutdown)
		if opts.clusterListen != "" {
			r.handOver = func() { handOver(srv, logger) }
		}
		if nc, err = srv.Connect(); err != nil {
			undo()
			return rooms{}, fmt.Errorf("embedded NATS server: %w", err)
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
		return rooms{}, fmt.Errorf("NATS broker: %w", err)
	}
	stop = append(stop, func() { b.Close() })
	r.broker, r.stop = b, undo
	if srv != nil && opts.clusterListen != "" {
		r.ready = caughtUp(b, srv, logger)
	}
	return r, nil
}

// handOverTimeout bounds the wait for the streams' new leaders when a node
// shuts down: past it, the node goes on with its shutdown, which steps
// down again (nats-server's Shutdown does).
const handOverTimeout = 5 * time.Second

// handOver hands the leadership of the streams the node's embedded server
// leads to the other nodes, and logs it.
func handOver(srv *natsbroker.Server, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), handOverTimeout)
	defer cancel()
	start := time.Now()
	streams, err := srv.HandOver(ctx)
	if err != nil {
		logger.Warn("handing over the NATS streams' leadership", "streams", streams, "error", err)
		return
	}
	if len(streams) > 0 {
		logger.Info("handed over the NATS streams' leadership", "streams", streams, "took", time.Since(start).Round(time.Millisecond))
	}
}

// caughtUpTimeout bounds one readiness check's questions to the streams'
// leaders: a probe wants an answer, and an election is a "not yet".
const caughtUpTimeout = 2 * time.Second

// caughtUp is the readiness of a node of a cluster of embedded servers: it
// fails until the node's replicas of the rooms' streams have caught up
// with their leaders (natsbroker.Broker.CaughtUp), and succeeds from then
// on. A node restarted on its data directory takes connections as soon as
// it has joined the cluster, but it counts towards the streams' quorum
// only once its replicas have caught up: an operator who restarts the next
// node when this one says ready must not leave the streams with one
// current replica of three. Once caught up the node stays ready: a node
// that falls behind later (a peer lost, an election) still serves its
// clients, and the broker's own readiness says when NATS is out of reach.
func caughtUp(b *natsbroker.Broker, srv *natsbroker.Server, logger *slog.Logger) func(context.Context) error {
	var caught atomic.Bool
	start := time.Now()
	return func(ctx context.Context) error {
		if caught.Load() {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, caughtUpTimeout)
		defer cancel()
		if err := b.CaughtUp(ctx, srv); err != nil {
			return fmt.Errorf("catching up with the NATS cluster: %w", err)
		}
		if caught.CompareAndSwap(false, true) {
			logger.Info("caught up with the NATS cluster", "after", time.Since(start).Round(time.Millisecond))
		}
		return nil
	}
}
