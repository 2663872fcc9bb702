package natsbroker

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Dir is where JetStream keeps its file store; required. History
	// survives a restart on the same Dir.
	Dir string
	// Name is the server's name, unique in a cluster; "" gives "duplex".
	Name string
	// Listen, when set ("127.0.0.1:4222", or port 0 for any free port), also
	// serves NATS clients over TCP. Otherwise the server has no network
	// listener at all and is reached only in process (Server.Connect).
	Listen string
	// ReadyTimeout bounds StartServer's wait for the server; 0 means 10s.
	ReadyTimeout time.Duration
	// Logs, when set, sends the server's notices to the standard logger.
	Logs bool
}

// Server is an embedded nats-server with JetStream.
type Server struct {
	ns *server.Server
}

// StartServer starts a nats-server with JetStream on a file store under
// opts.Dir, in this process, and waits until it takes connections.
func StartServer(opts ServerOptions) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("natsbroker: ServerOptions.Dir is required")
	}
	if opts.Name == "" {
		opts.Name = "duplex"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	so := &server.Options{
		ServerName: opts.Name,
		JetStream:  true,
		StoreDir:   opts.Dir,
		NoSigs:     true, // the host program owns signals
		NoLog:      !opts.Logs,
		DontListen: opts.Listen == "",
	}
	if opts.Listen != "" {
		host, port, err := splitHostPort(opts.Listen)
		if err != nil {
			return nil, err
		}
		so.Host, so.Port = host, port
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: %w", err)
	}
	if opts.Logs {
		ns.ConfigureLogger()
	}
	ns.Start()
	if !ns.ReadyForConnections(opts.ReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("natsbroker: embedded nats-server did not become ready")
	}
	return &Server{ns: ns}, nil
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

// NATS returns the embedded server, for what this package does not wrap.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped, so that the
// file store is closed and may be opened again.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// Connect connects to an external NATS server or cluster (a comma-separated
// list of URLs), retrying the first connection and reconnecting forever.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name("duplex"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true)}, opts...)
	return nats.Connect(url, opts...)
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natsbroker: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("natsbroker: listen address %q: bad port", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}
