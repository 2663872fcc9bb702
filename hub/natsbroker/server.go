package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Dir is where JetStream keeps its file store; required. History
	// survives a restart on the same Dir. Nodes of a cluster on one machine
	// need a Dir each.
	Dir string
	// Name is the server's name, unique in a cluster (JetStream tells its
	// peers by it: two nodes with one name break the cluster); "" gives
	// "duplex" for a single server, and is refused with Cluster.
	Name string
	// Listen, when set ("127.0.0.1:4222", or port 0 for any free port), also
	// serves NATS clients over TCP. Otherwise a single server has no network
	// listener at all and is reached only in process (Server.Connect); a
	// node of a cluster listens on 127.0.0.1 at a free port, which it does
	// not advertise (nats-server starts its routes only once a client
	// listener is up: server.go Start, route.go StartRouting).
	Listen string
	// ReadyTimeout bounds StartServer's wait for the server to take
	// connections; 0 means 10s.
	ReadyTimeout time.Duration

	// Cluster, when set, names the NATS cluster the server joins by routes:
	// every node of the cluster has the same Cluster, its own Name and its
	// own Dir. JetStream then runs clustered: streams are placed on, and
	// replicated to, as many nodes as their replicas (Options.Replicas).
	Cluster string
	// ClusterListen is where the node takes routes from the other nodes
	// ("0.0.0.0:6222"; port 0 for any free port, see ClusterURL); required
	// with Cluster.
	ClusterListen string
	// Routes lists the cluster addresses of the nodes ("host:port" or
	// "nats-route://host:port"). List every node, this one included (a
	// route to itself is ignored): JetStream takes the number of routes as
	// the cluster's size, for its quorum, until the nodes have met.
	Routes []string
	// ClusterTimeout bounds StartServer's wait, with Cluster, until the node
	// has joined the cluster's JetStream: a meta leader is elected and this
	// node is current with it. That takes a quorum of the nodes (2 of 3), so
	// start them together; 0 means 60s.
	ClusterTimeout time.Duration
	// Logs, when set, sends the server's notices to the standard logger.
	Logs bool
}

// Server is an embedded nats-server with JetStream.
type Server struct {
	ns *server.Server
}

// StartServer starts a nats-server with JetStream on a file store under
// opts.Dir, in this process, and waits until it takes connections; with
// opts.Cluster, also until it has joined the cluster's JetStream.
func StartServer(opts ServerOptions) (*Server, error) {
	so, err := serverOptions(&opts)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: %w", err)
	}
	if opts.Logs {
		ns.ConfigureLogger()
	}
	ns.Start()
	fail := func(err error) (*Server, error) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	if !ns.ReadyForConnections(opts.ReadyTimeout) {
		return fail(errors.New("natsbroker: embedded nats-server did not become ready"))
	}
	s := &Server{ns: ns}
	if opts.Cluster != "" {
		if err := s.waitJetStream(opts.ClusterTimeout); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

func serverOptions(opts *ServerOptions) (*server.Options, error) {
	if opts.Dir == "" {
		return nil, errors.New("natsbroker: ServerOptions.Dir is required")
	}
	if opts.Name == "" {
		if opts.Cluster != "" {
			return nil, errors.New("natsbroker: a node of a cluster needs a Name of its own")
		}
		opts.Name = "duplex"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.ClusterTimeout <= 0 {
		opts.ClusterTimeout = 60 * time.Second
	}
	so := &server.Options{
		ServerName: opts.Name,
		JetStream:  true,
		StoreDir:   opts.Dir,
		NoSigs:     true, // the host program owns signals
		NoLog:      !opts.Logs,
		DontListen: opts.Listen == "" && opts.Cluster == "",
	}
	if opts.Listen != "" {
		host, port, err := splitHostPort(opts.Listen)
		if err != nil {
			return nil, err
		}
		so.Host, so.Port = host, port
	}
	if opts.Cluster == "" {
		if opts.ClusterListen != "" || len(opts.Routes) > 0 {
			return nil, errors.New("natsbroker: ClusterListen and Routes need a Cluster name")
		}
		return so, nil
	}
	if opts.ClusterListen == "" {
		return nil, errors.New("natsbroker: a cluster needs ClusterListen, the address the node takes routes on")
	}
	if opts.Listen == "" {
		// Routes start only once a client listener is up: a loopback one,
		// not advertised to clients, so that none is sent to a node's
		// address that means something else on another machine.
		so.Host, so.Port = "127.0.0.1", server.RANDOM_PORT
		so.Cluster.NoAdvertise = true
	}
	host, port, err := splitAddr("cluster address", opts.ClusterListen)
	if err != nil {
		return nil, err
	}
	so.Cluster.Name = opts.Cluster
	so.Cluster.Host, so.Cluster.Port = host, port
	for _, r := range opts.Routes {
		u, err := routeURL(r)
		if err != nil {
			return nil, err
		}
		so.Routes = append(so.Routes, u)
	}
	return so, nil
}

// routeURL reads "host:port" or "nats-route://host:port".
func routeURL(r string) (*url.URL, error) {
	r = strings.TrimSpace(r)
	if !strings.Contains(r, "://") {
		r = "nats-route://" + r
	}
	u, err := url.Parse(r)
	if err != nil || u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("natsbroker: route %q: want host:port or nats-route://host:port", r)
	}
	return u, nil
}

// waitJetStream waits until this node knows the JetStream meta leader and
// is current with it (what nats-server's own health check asks of a
// clustered node: jetstream_cluster.go JetStreamIsCurrent, raft.go
// isCurrent), so that a broker on it can create or find its streams.
func (s *Server) waitJetStream(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if s.ns.JetStreamIsCurrent() && s.metaLeader() != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsbroker: node %s did not join the JetStream cluster within %v (%d routes up; a quorum of the nodes must be running)",
				s.ns.Name(), timeout, s.ns.NumRoutes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Current returns nil once this server is current with its cluster's
// JetStream, else what it still waits for: nats-server's own health check
// (Healthz, what its /healthz serves), which asks that the meta group has
// a leader this node is current with, and that every stream replica this
// node holds is not catching up from a snapshot and is current with, or
// making progress towards, its group's leader (jetstream_cluster.go
// isStreamHealthy, raft.go isCurrent). That is not "caught up": a node
// restarted on its directory passes it while its replica still lacks
// part of what was stored while it was away (TestHandOverAndCaughtUp sees a
// replica at 1128 of 2010); Broker.CaughtUp checks that too. A single
// server (no Cluster) is current once JetStream runs.
func (s *Server) Current() error {
	h := s.ns.Healthz(nil)
	if h.Error != "" {
		return fmt.Errorf("natsbroker: %s", h.Error)
	}
	if h.StatusCode != 0 && h.StatusCode != 200 {
		return fmt.Errorf("natsbroker: nats-server health %d %s", h.StatusCode, h.Status)
	}
	return nil
}

// HandOver hands the leadership of every stream this server leads to
// another of its replicas, and waits (within ctx) until each of them has a
// new leader; it returns the streams handed over. A node about to stop
// calls it before it lets its clients go: they reconnect to other nodes
// and recover from the streams at once, where, with this server still the
// leader until its Shutdown, they would meet the election that Shutdown
// starts (a read lost in it costs an attempt's timeout). nats-server picks
// the new leader among the replicas it heard from lately
// (raft.go StepDown) and tells it to campaign at once; a single server, or
// a stream of one replica, has nobody to hand over to and keeps its
// leadership.
func (s *Server) HandOver(ctx context.Context) ([]string, error) {
	if !s.ns.JetStreamIsClustered() {
		return nil, nil
	}
	handed, err := s.stepDown()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range handed {
		names = append(names, h.stream)
	}
	return names, s.awaitNewLeaders(ctx, handed)
}

// ledStream names a stream in its account.
type ledStream struct{ account, stream string }

// stepDown steps down from every replicated stream this server leads, and
// returns them.
func (s *Server) stepDown() ([]ledStream, error) {
	var handed []ledStream
	for _, a := range s.streams() {
		for _, sd := range a.Streams {
			if sd.Config != nil && sd.Config.Replicas > 1 && s.ns.JetStreamIsStreamLeader(a.Name, sd.Name) {
				if err := s.ns.JetStreamStepdownStream(a.Name, sd.Name); err != nil {
					return nil, fmt.Errorf("natsbroker: stepping down from stream %s: %w", sd.Name, err)
				}
				handed = append(handed, ledStream{a.Name, sd.Name})
			}
		}
	}
	return handed, nil
}

// awaitNewLeaders waits (within ctx) until each of the streams handed over
// has a leader other than this server, stepping down again from one that
// elected this server again.
func (s *Server) awaitNewLeaders(ctx context.Context, handed []ledStream) error {
	lastStep := time.Now()
	for {
		waiting := ""
		again := time.Since(lastStep) > 250*time.Millisecond
		for _, a := range s.streams() {
			for _, sd := range a.Streams {
				if !slices.Contains(handed, ledStream{a.Name, sd.Name}) {
					continue
				}
				if sd.Cluster == nil || sd.Cluster.Leader == "" || sd.Cluster.Leader == s.ns.Name() {
					waiting = sd.Name
				}
				// Elected again (the peer it handed over to could not
				// win, or did not campaign): step down again.
				if again && s.ns.JetStreamIsStreamLeader(a.Name, sd.Name) {
					s.ns.JetStreamStepdownStream(a.Name, sd.Name)
					lastStep = time.Now()
				}
			}
		}
		if waiting == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsbroker: stream %s has no new leader: %w", waiting, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// lastSeq is the last sequence of this server's own replica of stream
// (in any account), and whether it holds one.
func (s *Server) lastSeq(stream string) (uint64, bool) {
	for _, a := range s.streams() {
		for _, sd := range a.Streams {
			if sd.Name == stream {
				return sd.State.LastSeq, true
			}
		}
	}
	return 0, false
}

// streams lists the streams of every account this server holds a replica
// of, with their configuration and leader as this server knows them.
func (s *Server) streams() []*server.AccountDetail {
	jsz, err := s.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Config: true})
	if err != nil {
		return nil
	}
	return jsz.AccountDetails
}

// metaLeader is the name of the JetStream meta leader this node knows, ""
// for none.
func (s *Server) metaLeader() string {
	jsz, err := s.ns.Jsz(&server.JSzOptions{LeaderOnly: false})
	if err != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// Connect opens a client connection to the server in process (no socket),
// with reconnects for as long as the server runs.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("duplex")}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the server's nats:// address when it listens, else "".
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// ClusterURL is the node's route address, nats-route://host:port, when it
// is a node of a cluster, else "".
func (s *Server) ClusterURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats-route://" + a.String()
}

// Name is the server's name.
func (s *Server) Name() string { return s.ns.Name() }

// NATS returns the embedded server, for what this package does not wrap.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped, so that the
// file store is closed and may be opened again. In a cluster, nats-server's
// Shutdown first hands over every RAFT group this node leads (the meta
// group, the streams') to a healthy peer (server.go Shutdown calls
// stepdownRaftNodes; raft.go StepDown sends EntryLeaderTransfer, so the peer
// campaigns at once instead of after an election timeout): the others
// elect no leader by timeout, and publishes wait for a moment, not for
// seconds.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// Connect connects to an external NATS server or cluster (a comma-separated
// list of URLs), retrying the first connection and reconnecting forever.
// It pings the server every connectPingInterval and gives up on a
// connection after two pings unanswered, so that a connection that stays
// up but carries nothing (a partition, a dead peer behind a NAT) is
// noticed in seconds: until then Ready says ready and publishes wait for
// their timeout, while subscribers get nothing. The client's default, 2
// minutes, takes 4 to 6 minutes to notice. opts may override it.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{
		nats.Name("duplex"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.PingInterval(connectPingInterval), nats.MaxPingsOutstanding(2),
	}, opts...)
	return nats.Connect(url, opts...)
}

// connectPingInterval is how often Connect's connections ping their server.
const connectPingInterval = 5 * time.Second

func splitHostPort(addr string) (string, int, error) {
	return splitAddr("listen address", addr)
}

func splitAddr(what, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natsbroker: %s %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("natsbroker: %s %q: bad port", what, addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}
