//go:build linux

// Package loadgen is the benchmark's load generator: one goroutine driving a
// raw epoll set over every connection, with frames built once before the run
// and a parser that reads no more of a server frame than its header (and,
// where it must, the first bytes of the payload).
//
// Lean is the point: on a 2-core machine a client that spends a goroutine, a
// bufio.Reader and a full frame decoder per connection saturates before the
// fastest servers do. Here a message costs the generator one read and one
// write system call, amortised over everything epoll_wait returns at once.
//
// Modes, one file each beside the shared core (gen.go: the epoll loop;
// connect.go: dialing and the handshake; read.go: the frame parser;
// measure.go: warm-up and measured window):
//   - echo (echo.go): every connection keeps Depth messages in flight and
//     sends the next when one comes back; throughput and round-trip latency
//     are measured after a warm-up. Depth > 1 is pipelined echo: the same
//     code, a ring of Depth send times per connection.
//   - idle (idle.go): connections are opened and held silent, growing on command, so
//     that the harness can read the server's memory.
//   - broadcast (broadcast.go, hub.go for HubRoom and JSON): connection 0 publishes, every connection (the publisher too)
//     is a subscriber; at most Window messages are in flight, a message
//     retires when every subscriber has it, and each delivery's lag from the
//     publish time is recorded. With JSON the messages are text, a JSON
//     string that ends in the sequence number and the send time, and the lag
//     is the receive time minus the embedded send time, wherever the string
//     sits in what the server delivers (the hub wraps it in its pub push).
//     With HubRoom the server is a hub (package hub): every connection but
//     the publisher sends the protocol's connect and subscribe commands once
//     open and the run starts when every subscribe has been answered; the
//     publisher opens PubPath instead and is no subscriber.
//   - Compress (deflate.go) applies to echo and idle: permessage-deflate is
//     offered and every client message is deflated on its own.
package loadgen

import (
	"fmt"
	"time"
)

// Modes.
const (
	ModeEcho      = "echo"
	ModeIdle      = "idle"
	ModeBroadcast = "broadcast"
)

// Config describes one load run.
type Config struct {
	Addr       string        // server address, IPv4 "host:port"
	Proto      string        // "ws" (RFC 6455) or "tcp" (length-prefixed floor)
	Path       string        // websocket path; default "/ws"
	Mode       string        // ModeEcho, ModeIdle or ModeBroadcast
	Conns      int           // connections (echo, idle: initial; broadcast: subscribers besides the publisher)
	Payload    int           // message payload in bytes (broadcast: at least 16)
	Depth      int           // echo: messages in flight per connection; default 1
	Window     int           // broadcast: messages in flight; default 4
	Compress   bool          // offer permessage-deflate and send deflated frames
	Warmup     time.Duration // echo, broadcast: load before measuring
	Duration   time.Duration // echo, broadcast: measured time
	PerIP      int           // connections per source address 127.0.0.x (x from 2); default 1000
	MaxDialing int           // connections being opened at once; default 256
	Verify     bool          // check every connection's first echo byte for byte
	Chat       int           // idle: messages (~200 B of chat-like JSON, different each) each connection sends once open, before going idle
	JSON       bool          // broadcast: text messages, a JSON string of Payload bytes (at least 40) ending in the hex sequence number and send time in ns
	HubRoom    string        // broadcast through a hub: subscribers connect and subscribe to this room (hub wire protocol) before the run; implies JSON
	PubPath    string        // HubRoom: the publisher's path, a plain WebSocket whose messages the server publishes to the room given as ?room=; default "/pub"
}

// Event tells the driver where a run is.
type Event struct {
	Kind string // "connected", "ready" (broadcast: subscribers seated), "measure-start", "measure-end"
	N    int    // connected: the number of open connections
}

// Command steers an idle run: Grow to N open connections, or Stop (N < 0).
type Command struct{ N int }

// Result is what a run measured. Latencies are in microseconds.
type Result struct {
	Mode       string  `json:"mode"`
	Conns      int     `json:"conns"`               // connections open at the end of the connect phase
	Failed     int     `json:"failed"`              // connections that could not be opened
	Negotiated int     `json:"negotiated"`          // connections whose handshake accepted permessage-deflate
	Extension  string  `json:"extension,omitempty"` // Compress: the server's first Sec-WebSocket-Extensions answer (its parameters say its mode)
	Errors     int     `json:"errors"`              // connections lost during the run
	Seconds    float64 `json:"seconds"`             // measured time
	Msgs       int64   `json:"msgs"`                // echo: round trips completed in the measured time
	Bytes      int64   `json:"bytes"`               // payload bytes received in the measured time
	Published  int64   `json:"published"`           // broadcast: messages published in the measured time
	Deliveries int64   `json:"deliveries"`          // broadcast: deliveries received in the measured time
	Lost       int64   `json:"lost"`                // broadcast: deliveries given up after the retire timeout
	P50        float64 `json:"p50_us"`              // echo: round trip; broadcast: delivery lag
	P99        float64 `json:"p99_us"`              //
	P999       float64 `json:"p999_us"`             //
	Max        float64 `json:"max_us"`              //
	CPU        float64 `json:"cpu_seconds"`         // the generator's own CPU time in the measured time
	Total      int64   `json:"total"`               // echo messages or deliveries, warm-up included; idle: chat echoes
	Subscribed int     `json:"subscribed"`          // HubRoom: subscriptions the hub confirmed before the run
	VerifyErr  string  `json:"verify,omitempty"`    // first verification failure
}

// Run performs one load run. Events, if not nil, is called at each milestone;
// ctl, if not nil, steers an idle run (which otherwise ends at once after
// connecting).
func Run(cfg Config, ctl <-chan Command, events func(Event)) (Result, error) {
	if cfg.Path == "" {
		cfg.Path = "/ws"
	}
	if cfg.Depth <= 0 {
		cfg.Depth = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = 4
	}
	if cfg.Window > 32 {
		cfg.Window = 32
	}
	if cfg.PerIP <= 0 {
		cfg.PerIP = 1000
	}
	if cfg.MaxDialing <= 0 {
		cfg.MaxDialing = 256
	}
	if cfg.HubRoom != "" {
		cfg.JSON = true
		if cfg.PubPath == "" {
			cfg.PubPath = "/pub"
		}
	}
	if events == nil {
		events = func(Event) {}
	}
	g := &gen{cfg: cfg, base: time.Now(), ws: cfg.Proto != "tcp"}
	if err := g.setup(); err != nil {
		return Result{}, err
	}
	defer g.teardown()

	res := Result{Mode: cfg.Mode}
	total := cfg.Conns
	if cfg.Mode == ModeBroadcast {
		total++ // the publisher
	}
	if err := g.connect(total); err != nil {
		return res, err
	}
	events(Event{Kind: "connected", N: g.open})
	res.Conns, res.Failed, res.Negotiated = g.open, g.failed, g.negotiated

	var err error
	switch cfg.Mode {
	case ModeIdle:
		err = g.runIdle(ctl, events, &res)
	case ModeEcho:
		err = g.runLoad(events, &res)
	case ModeBroadcast:
		if err = g.seatSubscribers(events, &res); err == nil {
			err = g.runLoad(events, &res)
		}
	default:
		err = fmt.Errorf("loadgen: unknown mode %q", cfg.Mode)
	}
	if err != nil {
		return res, err
	}
	res.Errors = g.errors
	res.Extension = g.extension
	res.VerifyErr = g.verifyErr
	return res, nil
}
