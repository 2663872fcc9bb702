package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// config is the server's configuration, from flags and their environment twins.
type config struct {
	addr           string
	allowedOrigins []string
	logLevel       slog.Level
	shutdownCode   websocket.StatusCode // sent to every WebSocket on shutdown
	drain          time.Duration        // spread of the shutdown's close frames
	maxConns       int                  // WebSockets and event streams at once, all endpoints; 0: no cap
	handshake      handshakeOptions     // timeout and rate limit
	tls            tlsOptions           // tls.go
	broker         brokerOptions        // broker.go
	eventLoop      bool                 // the hub's WebSockets in websocket's event loop (hub.Options.EventLoop)
}

// defaultMaxConnections is -max-connections' default: under the 20000 open
// files a process may have on the machines Duplex was measured on (each
// WebSocket is one), with room for the listener, HTTP requests, TLS and the
// broker.
const defaultMaxConnections = 10000

// handshakeOptions bound the opening of WebSockets and event streams.
type handshakeOptions struct {
	// timeout bounds reading a request's header (and the TLS handshake
	// before it: net/http bounds both by ReadHeaderTimeout) and writing a
	// WebSocket handshake's response, so that a client that trickles its
	// request (slowloris) holds a socket and a goroutine this long at most.
	timeout time.Duration
	// rate and burst limit each client address's handshakes
	// (websocket.HandshakeRate); rate 0: no limit.
	rate  float64
	burst int
	// clientIPHeader names the header, set by a reverse proxy, whose last
	// address is the client's, for the rate limit; "": RemoteAddr.
	clientIPHeader string
}

// usageError is a bad flag or environment value.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseConfig reads args (without the program name) and the environment
// through getenv. A flag given on the command line wins over its variable.
// -h prints the usage to out and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("duplex", flag.ContinueOnError)
	fs.SetOutput(out)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	addr := fs.String("addr", env("DUPLEX_ADDR", ":9292"),
		"`address` to listen on, host:port (env DUPLEX_ADDR)")
	origins := fs.String("allowed-origins", env("DUPLEX_ALLOWED_ORIGINS", ""),
		"comma-separated origin `patterns` allowed to open /chat/connect besides the server's own host,\n"+
			`e.g. "*.example.com,http://localhost:*" (env DUPLEX_ALLOWED_ORIGINS)`)
	level := fs.String("log-level", env("DUPLEX_LOG_LEVEL", "info"),
		"`level` of the logs: debug, info, warn or error (env DUPLEX_LOG_LEVEL)")
	shutdownCode := fs.String("shutdown-code", env("DUPLEX_SHUTDOWN_CODE", "going-away"),
		"close `code` sent to every WebSocket on SIGINT or SIGTERM: going-away (1001) or service-restart (1012),\n"+
			"which tells clients that the server restarts (env DUPLEX_SHUTDOWN_CODE)")
	drain := fs.String("drain", env("DUPLEX_DRAIN", "0s"),
		"`duration` over which the shutdown spreads its close frames, so that clients do not all reconnect at once;\n"+
			"0 closes all at once; less than the shutdown timeout ("+shutdownTimeout.String()+") (env DUPLEX_DRAIN)")
	maxConns := fs.String("max-connections", env("DUPLEX_MAX_CONNECTIONS", strconv.Itoa(defaultMaxConnections)),
		"most `WebSockets` and event streams open at once, /chat/connect, /chat/hub and /chat/rooms/{room}/events\n"+
			"together; one more is refused with 503 and Retry-After before its upgrade; keep it under the open-file\n"+
			"limit (ulimit -n); 0: no cap (env DUPLEX_MAX_CONNECTIONS)")
	handshakeTimeout := fs.String("handshake-timeout", env("DUPLEX_HANDSHAKE_TIMEOUT", websocket.DefaultHandshakeTimeout.String()),
		"`duration` a client has to send its request header (after the TLS handshake, which it bounds too) and the\n"+
			"server to send a WebSocket handshake's response; a slower client is cut (env DUPLEX_HANDSHAKE_TIMEOUT)")
	handshakeRate := fs.String("handshake-rate", env("DUPLEX_HANDSHAKE_RATE", "0"),
		"WebSocket and event-stream `handshakes` per second that one client address (IPv6: one /64) may sustain;\n"+
			"one more is refused with 429 and Retry-After; 0: no limit. Off by default: behind NAT or a proxy many\n"+
			"clients share an address (see -client-ip-header) (env DUPLEX_HANDSHAKE_RATE)")
	handshakeBurst := fs.String("handshake-burst", env("DUPLEX_HANDSHAKE_BURST", "0"),
		"`handshakes` one client address may make at once under -handshake-rate; 0: 10, or the rate if more\n"+
			"(env DUPLEX_HANDSHAKE_BURST)")
	clientIPHeader := fs.String("client-ip-header", env("DUPLEX_CLIENT_IP_HEADER", ""),
		"`header` in which the reverse proxy in front of duplex passes the client's address, for -handshake-rate:\n"+
			"X-Real-IP, or X-Forwarded-For (its last address is taken, the one the proxy added); set it only behind a\n"+
			"proxy that sets the header, as clients can send any header (env DUPLEX_CLIENT_IP_HEADER)")
	brokerKind := fs.String("broker", env("DUPLEX_BROKER", "nats"),
		"`kind` of broker for the chat's rooms: nats (an embedded NATS server with JetStream, history on disk\n"+
			"under -data-dir; or the NATS system of -nats-url) or memory (this process only) (env DUPLEX_BROKER)")
	dataDir := fs.String("data-dir", env("DUPLEX_DATA_DIR", defaultDataDir),
		"`directory` where the embedded NATS server keeps the rooms' history (env DUPLEX_DATA_DIR)")
	natsURL := fs.String("nats-url", env("DUPLEX_NATS_URL", ""),
		"`URLs` (comma-separated) of an existing NATS system to use instead of the embedded server (env DUPLEX_NATS_URL)")
	natsListen := fs.String("nats-listen", env("DUPLEX_NATS_LISTEN", ""),
		"`address` where the embedded NATS server also serves NATS clients; none by default (env DUPLEX_NATS_LISTEN)")
	natsCluster := fs.String("nats-cluster", env("DUPLEX_NATS_CLUSTER", ""),
		"`address` (host:port) where this node's embedded NATS server takes routes from the other nodes of a\n"+
			"cluster; set, the node joins the cluster of -nats-routes (env DUPLEX_NATS_CLUSTER)")
	natsRoutes := fs.String("nats-routes", env("DUPLEX_NATS_ROUTES", ""),
		"comma-separated route `addresses` (host:port) of every node of the cluster, this one included (env DUPLEX_NATS_ROUTES)")
	natsName := fs.String("nats-name", env("DUPLEX_NATS_NAME", ""),
		"this node's `name` in the NATS cluster, unique per node; default: the host name and -nats-cluster's port (env DUPLEX_NATS_NAME)")
	natsReplicas := fs.String("nats-replicas", env("DUPLEX_NATS_REPLICAS", "1"),
		"`copies` of the rooms' history in the NATS cluster: 1, or 3 to survive the loss of a node (env DUPLEX_NATS_REPLICAS)")
	eventLoop := fs.Bool("event-loop", false,
		"serve /chat/hub's WebSockets from websocket's event loop (Linux, HTTP/1.1 without TLS): an idle client then\n"+
			"holds no goroutine and no read buffer; elsewhere, and for the other endpoints, a goroutine each (env DUPLEX_EVENT_LOOP)")
	readTLS := addTLSFlags(fs, getenv)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: duplex [flags]\n\nServes the Duplex chat: GET /chat/index?room=NAME (hub WebSocket /chat/hub, events /chat/rooms/{room}/events), the guide's echo GET /chat/echo (WebSocket /chat/connect); for operations GET /metrics (Prometheus), GET /healthz (the process is up) and GET /readyz (200 while it takes connections: in a cluster of embedded NATS servers, once its NATS replicas have caught up; 503 once shutting down).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return config{}, err
		}
		return config{}, usageError{err}
	}
	if fs.NArg() > 0 {
		return config{}, usageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}

	cfg := config{addr: *addr}
	for _, p := range strings.Split(*origins, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return config{}, usageError{fmt.Errorf("-allowed-origins: bad pattern %q: %v", p, err)}
		}
		cfg.allowedOrigins = append(cfg.allowedOrigins, p)
	}
	switch strings.ToLower(*level) {
	case "debug":
		cfg.logLevel = slog.LevelDebug
	case "info":
		cfg.logLevel = slog.LevelInfo
	case "warn", "warning":
		cfg.logLevel = slog.LevelWarn
	case "error":
		cfg.logLevel = slog.LevelError
	default:
		return config{}, usageError{fmt.Errorf("-log-level: %q is not one of debug, info, warn, error", *level)}
	}
	switch strings.ToLower(strings.TrimSpace(*shutdownCode)) {
	case "going-away", "1001":
		cfg.shutdownCode = websocket.StatusGoingAway
	case "service-restart", "1012":
		cfg.shutdownCode = websocket.StatusServiceRestart
	default:
		return config{}, usageError{fmt.Errorf("-shutdown-code: %q is not going-away (1001) or service-restart (1012)", *shutdownCode)}
	}
	d, err := time.ParseDuration(strings.TrimSpace(*drain))
	switch {
	case err != nil:
		return config{}, usageError{fmt.Errorf("-drain: %q is not a duration like 5s or 1500ms", *drain)}
	case d < 0:
		return config{}, usageError{fmt.Errorf("-drain: %v is negative", d)}
	case d >= shutdownTimeout:
		return config{}, usageError{fmt.Errorf("-drain: %v is not shorter than the shutdown timeout, %v: the last connections would be dropped without a close frame", d, shutdownTimeout)}
	}
	cfg.drain = d
	n, err := strconv.Atoi(strings.TrimSpace(*maxConns))
	if err != nil || n < 0 {
		return config{}, usageError{fmt.Errorf("-max-connections: %q is not a number of connections (0 for no cap)", *maxConns)}
	}
	cfg.maxConns = n
	if cfg.handshake, err = parseHandshake(*handshakeTimeout, *handshakeRate, *handshakeBurst, *clientIPHeader); err != nil {
		return config{}, usageError{err}
	}
	cfg.broker = brokerOptions{kind: strings.ToLower(strings.TrimSpace(*brokerKind)), dataDir: *dataDir,
		url: strings.TrimSpace(*natsURL), listen: strings.TrimSpace(*natsListen)}
	switch {
	case cfg.broker.kind != "nats" && cfg.broker.kind != "memory":
		return config{}, usageError{fmt.Errorf("-broker: %q is not nats or memory", *brokerKind)}
	case cfg.broker.kind == "memory" && (cfg.broker.url != "" || cfg.broker.listen != ""):
		return config{}, usageError{fmt.Errorf("-nats-url and -nats-listen need -broker nats")}
	case cfg.broker.url != "" && cfg.broker.listen != "":
		return config{}, usageError{fmt.Errorf("-nats-listen is for the embedded server, not with -nats-url")}
	case cfg.broker.dataDir == "":
		return config{}, usageError{fmt.Errorf("-data-dir is empty")}
	}
	if err := parseCluster(&cfg.broker, *natsCluster, *natsRoutes, *natsName, *natsReplicas); err != nil {
		return config{}, usageError{err}
	}
	if err := boolEnv(fs, getenv, "event-loop", "DUPLEX_EVENT_LOOP", eventLoop); err != nil {
		return config{}, usageError{err}
	}
	cfg.eventLoop = *eventLoop
	tlsOpts, err := readTLS()
	if err != nil {
		return config{}, usageError{err}
	}
	cfg.tls = tlsOpts
	return cfg, nil
}

// boolEnv sets *v from the environment variable envName, unless the
// boolean flag flagName was given on fs's command line (fs is parsed).
func boolEnv(fs *flag.FlagSet, getenv func(string) string, flagName, envName string, v *bool) error {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == flagName })
	s := getenv(envName)
	if given || s == "" {
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%s: %q is not a boolean (1, true, 0, false)", envName, s)
	}
	*v = b
	return nil
}

// parseHandshake reads the handshake flags.
func parseHandshake(timeout, rate, burst, header string) (handshakeOptions, error) {
	var h handshakeOptions
	d, err := time.ParseDuration(strings.TrimSpace(timeout))
	if err != nil || d <= 0 {
		return h, fmt.Errorf("-handshake-timeout: %q is not a positive duration like 10s", timeout)
	}
	h.timeout = d
	if h.rate, err = strconv.ParseFloat(strings.TrimSpace(rate), 64); err != nil || !(h.rate >= 0) || math.IsInf(h.rate, 1) {
		return h, fmt.Errorf("-handshake-rate: %q is not a number of handshakes per second (0 for no limit)", rate)
	}
	if h.burst, err = strconv.Atoi(strings.TrimSpace(burst)); err != nil || h.burst < 0 {
		return h, fmt.Errorf("-handshake-burst: %q is not a number of handshakes (0 for the default)", burst)
	}
	h.clientIPHeader = http.CanonicalHeaderKey(strings.TrimSpace(header))
	if h.clientIPHeader != "" && h.rate == 0 {
		return h, fmt.Errorf("-client-ip-header is for -handshake-rate, which is off")
	}
	return h, nil
}

// parseCluster reads the cluster flags into b.
func parseCluster(b *brokerOptions, listen, routes, name, replicas string) error {
	b.clusterListen, b.name = strings.TrimSpace(listen), strings.TrimSpace(name)
	for _, r := range strings.Split(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			b.routes = append(b.routes, r)
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(replicas))
	if err != nil || n < 1 || n > 5 {
		return fmt.Errorf("-nats-replicas: %q is not 1 to 5", replicas)
	}
	b.replicas = n
	switch {
	case b.clusterListen == "" && (len(b.routes) > 0 || b.name != ""):
		return fmt.Errorf("-nats-routes and -nats-name need -nats-cluster")
	case b.clusterListen != "" && (b.kind != "nats" || b.url != ""):
		return fmt.Errorf("-nats-cluster is for the embedded NATS server: not with -broker memory or -nats-url")
	case b.clusterListen != "" && len(b.routes) == 0:
		return fmt.Errorf("-nats-cluster needs -nats-routes, the route addresses of the cluster's nodes")
	case b.replicas > 1 && b.clusterListen == "" && b.url == "":
		return fmt.Errorf("-nats-replicas %d needs a cluster (-nats-cluster) or an external one (-nats-url)", b.replicas)
	}
	if b.clusterListen != "" && b.name == "" {
		host, _ := os.Hostname()
		_, port, err := net.SplitHostPort(b.clusterListen)
		if err != nil {
			return fmt.Errorf("-nats-cluster: %v", err)
		}
		b.name = host + "-" + port
	}
	return nil
}
