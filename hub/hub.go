package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// Defaults of Options.
const (
	DefaultQueueBytes         = 1 << 20
	DefaultQueueMessages      = 4096
	DefaultMaxRecover         = DefaultHistorySize
	DefaultConnectTimeout     = 10 * time.Second
	DefaultMaxPublicationSize = 64 << 10
	DefaultMaxSubscriptions   = 128
	DefaultPublishRate        = 50 // per second
	DefaultPublishBurst       = 100
)

// Close codes the hub sends (PROTOCOL.md, "Close codes").
const (
	CloseBadRequest        websocket.StatusCode = 4000 // a malformed command: a client bug, do not reconnect
	CloseUnauthorized      websocket.StatusCode = 4001 // connect refused or missing: do not reconnect as is
	CloseConnectTimeout    websocket.StatusCode = 4002 // no connect in time: reconnect
	CloseSlowConsumer      websocket.StatusCode = 4008 // send queue overflowed: reconnect and recover
	CloseInsufficientState websocket.StatusCode = 4010 // the server lost track of a room: reconnect and recover
)

// Action is what a client asks to do in a room, for Options.Authorize.
type Action uint8

const (
	ActionSubscribe Action = iota + 1
	ActionPublish
	ActionHistory
	ActionPresence
)

func (a Action) String() string {
	switch a {
	case ActionSubscribe:
		return "subscribe"
	case ActionPublish:
		return "publish"
	case ActionHistory:
		return "history"
	case ActionPresence:
		return "presence"
	}
	return "unknown"
}

// ConnectRequest is what the authentication hook decides on: the client's
// connect command and the HTTP request of its handshake (cookies, headers).
type ConnectRequest struct {
	Request *http.Request
	Token   string
	Data    json.RawMessage
	// EventStream is set for a Server-Sent Events request (ServeEvents),
	// which has no connect command: no Token, no Data.
	EventStream bool
}

// Identity is who the authentication hook says a client is.
type Identity struct {
	User string          // "" for anonymous
	Info json.RawMessage // shown to others in presence and as a publisher; optional JSON
}

// Options configure a Hub. The zero value gives the defaults.
type Options struct {
	// Broker carries the rooms; nil gives NewMemoryBroker's defaults, and
	// the Hub closes that broker when it shuts down. A Broker given here is
	// the caller's to close.
	Broker Broker

	// WebSocket configures the handshake and the connections (origins,
	// keepalive, compression). The hub sets the subprotocol and a read limit
	// that fits MaxPublicationSize. Without Compression options the hub
	// compresses without context takeover: a publication is then compressed
	// once for all its subscribers, where with takeover each connection
	// compresses it again against its own history.
	WebSocket websocket.AcceptOptions

	// QueueBytes and QueueMessages bound what a connection may have waiting
	// to be written; one more publication or presence event and the
	// connection is closed with CloseSlowConsumer, so that a client that
	// stops reading never slows its rooms or the publishers. 0 means
	// DefaultQueueBytes (1 MiB) and DefaultQueueMessages.
	QueueBytes    int
	QueueMessages int

	// MaxRecover is the most publications a subscriber recovers at once;
	// one that missed more is told that it cannot recover. 0 means
	// DefaultMaxRecover.
	MaxRecover int

	// ConnectTimeout is how long a client has to send its connect command.
	// 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// MaxPublicationSize is the largest publication data, in bytes, that a
	// client may publish; 0 means DefaultMaxPublicationSize.
	MaxPublicationSize int

	// MaxSubscriptions is the most rooms one connection may subscribe to at
	// once; 0 means DefaultMaxSubscriptions.
	MaxSubscriptions int

	// PublishRate and PublishBurst limit a connection's publishes (a token
	// bucket: PublishRate per second, up to PublishBurst at once); a publish
	// over the limit gets the error 429. 0 means DefaultPublishRate and
	// DefaultPublishBurst; a negative PublishRate means no limit.
	PublishRate  float64
	PublishBurst int

	// Authenticate decides a client's connect command. Nil accepts everyone
	// as anonymous. An error refuses the connection: the client gets the
	// error 401 (an *Error chooses the code and message; other errors are
	// not shown) and the close CloseUnauthorized.
	Authenticate func(ctx context.Context, req ConnectRequest) (Identity, error)

	// Authorize decides each subscribe, publish, history and presence
	// command. Nil allows everything. An error refuses the command with the
	// error 403 (or the *Error returned); the connection stays.
	Authorize func(ctx context.Context, who ClientInfo, room string, action Action) error

	// ShutdownCode and DrainWindow configure Shutdown as in
	// websocket.Server.
	ShutdownCode websocket.StatusCode
	DrainWindow  time.Duration

	// MaxConnections and ConnLimit cap the hub's WebSockets and event
	// streams, alone or together with other websocket.Servers that share
	// the ConnLimit, as in websocket.Server: a client over the cap is
	// refused before the upgrade with 503 and Retry-After.
	MaxConnections int
	ConnLimit      *websocket.ConnLimit

	// HandshakeRate, when set, limits how fast each client may open
	// WebSockets and event streams, as in websocket.Server: one over it
	// is refused with 429 and Retry-After. It may be shared.
	HandshakeRate *websocket.HandshakeRate

	// Hooks observe the hub's WebSocket handshakes and connection ends,
	// as websocket.Server's Hooks do; Stats gives the hub's counts.
	Hooks websocket.ServerHooks

	// ObservePublish, when set, is called after each Broker.Publish the
	// hub makes (a client's publish command, Hub.Publish), with the room,
	// how long the broker took and its error: for a latency histogram. It
	// runs in the publisher's goroutine and must be quick.
	ObservePublish func(room string, took time.Duration, err error)

	// EventLoop serves the WebSocket clients through websocket's event loop
	// (websocket.Server.AcceptEvents) instead of a reading goroutine each:
	// on Linux, over HTTP/1.1 without TLS, a client waiting for its next
	// command then holds no goroutine and no read buffer, and its commands
	// start from a small pool of goroutines. Over TLS and on other platforms
	// each client keeps a reading goroutine, and over HTTP/2 it is served
	// as without EventLoop. The
	// protocol and every other option behave the same either way; the
	// Authenticate hook runs on that pool, so it should be quick.
	EventLoop bool

	// Logger receives the hub's warnings (refused connects, slow consumers,
	// broker failures). Nil discards them.
	Logger *slog.Logger
}

// Hub serves rooms to WebSocket clients speaking the hub's protocol
// (PROTOCOL.md): an http.Handler for the WebSocket endpoint, and methods for
// the server's own publishes and queries.
type Hub struct {
	opts        Options
	broker      Broker
	ownBroker   bool
	ws          websocket.Server
	log         *slog.Logger
	ctx         context.Context // ends at Shutdown: background work of rooms
	cancel      context.CancelFunc
	shutdownOne sync.Once

	mu    sync.Mutex
	rooms map[string]*room

	sessions      atomic.Int64
	eventStreams  atomic.Int64
	subscriptions atomic.Int64
	queuedBytes   atomic.Int64 // over the sessions' send queues (session.queued) and the event streams' buffers
	queuedMsgs    atomic.Int64
	slowConsumers atomic.Uint64
	publications  atomic.Uint64
	repairs       atomic.Uint64
	resets        atomic.Uint64
}

// New returns a Hub configured by opts.
func New(opts Options) *Hub {
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.QueueMessages <= 0 {
		opts.QueueMessages = DefaultQueueMessages
	}
	if opts.MaxRecover <= 0 {
		opts.MaxRecover = DefaultMaxRecover
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxPublicationSize <= 0 {
		opts.MaxPublicationSize = DefaultMaxPublicationSize
	}
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if opts.PublishRate == 0 {
		opts.PublishRate = DefaultPublishRate
	}
	if opts.PublishBurst <= 0 {
		opts.PublishBurst = DefaultPublishBurst
	}
	h := &Hub{opts: opts, broker: opts.Broker, log: opts.Logger, rooms: make(map[string]*room)}
	if h.broker == nil {
		h.broker, h.ownBroker = NewMemoryBroker(MemoryOptions{}), true
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	wsOpts := opts.WebSocket
	wsOpts.Subprotocols = []string{Subprotocol}
	if wsOpts.Compression == nil {
		wsOpts.Compression = &websocket.CompressionOptions{NoContextTakeover: true}
	}
	// A publish command embeds its data as is: the margin is for the
	// envelope around it.
	wsOpts.ReadLimit = int64(opts.MaxPublicationSize) + 4096
	h.ws = websocket.Server{
		Options:        wsOpts,
		ShutdownCode:   opts.ShutdownCode,
		DrainWindow:    opts.DrainWindow,
		MaxConnections: opts.MaxConnections,
		Limit:          opts.ConnLimit,
		HandshakeRate:  opts.HandshakeRate,
		Hooks:          opts.Hooks,
	}
	return h
}

// ServeHTTP serves the hub's WebSocket endpoint. A client that offers
// subprotocols but not Subprotocol is refused with 400.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if offered := r.Header.Values("Sec-WebSocket-Protocol"); len(offered) > 0 && !offers(offered, Subprotocol) {
		http.Error(w, "this endpoint speaks the subprotocol "+Subprotocol, http.StatusBadRequest)
		return
	}
	// Over HTTP/2 the event loop's callbacks run on this handler's
	// goroutine, which it holds until the connection ends: nothing to save.
	if h.opts.EventLoop && r.ProtoMajor != 2 {
		h.serveEvents(w, r) // session_events.go
		return
	}
	h.ws.Open(w, r, func(ctx context.Context, c *websocket.Conn) error { return h.serve(ctx, c, r) })
}

// Publish appends data (a JSON value) to the room as the server and returns
// its position.
func (h *Hub) Publish(ctx context.Context, room string, data json.RawMessage) (Position, error) {
	return h.PublishMessage(ctx, room, Message{Data: data})
}

// PublishMessage publishes m (its Data a JSON value; Key, when set, makes a
// retried publish idempotent) to the room.
func (h *Hub) PublishMessage(ctx context.Context, room string, m Message) (Position, error) {
	if !validRoom(room) {
		return Position{}, &Error{Code: CodeBadRequest, Message: "invalid room name"}
	}
	if !json.Valid(m.Data) {
		return Position{}, &Error{Code: CodeBadRequest, Message: "data is not a JSON value"}
	}
	return h.publish(ctx, room, m)
}

// publish is Broker.Publish, counted and observed.
func (h *Hub) publish(ctx context.Context, room string, m Message) (Position, error) {
	observe := h.opts.ObservePublish
	var start time.Time
	if observe != nil {
		start = time.Now()
	}
	pos, err := h.broker.Publish(ctx, room, m)
	if observe != nil {
		observe(room, time.Since(start), err)
	}
	if err == nil {
		h.publications.Add(1)
	}
	return pos, err
}

// History reads a room's history; see Broker.History.
func (h *Hub) History(ctx context.Context, room string, q HistoryQuery) (History, error) {
	if !validRoom(room) {
		return History{}, &Error{Code: CodeBadRequest, Message: "invalid room name"}
	}
	return h.broker.History(ctx, room, q)
}

// Presence lists the clients present in a room.
func (h *Hub) Presence(ctx context.Context, room string) ([]ClientInfo, error) {
	return h.broker.Presence(ctx, room)
}

// Stats is a snapshot of a Hub's counters.
type Stats struct {
	Connections   int    // WebSockets open
	EventStreams  int    // event streams (SSE) open
	Rooms         int    // rooms with subscribers on this hub
	Subscriptions int    // subscriptions of this hub's clients
	SlowConsumers uint64 // connections closed with CloseSlowConsumer, since New
	Publications  uint64 // publishes through this hub, since New
	Repairs       uint64 // gaps in a broker's live delivery filled from history
	Resets        uint64 // rooms whose subscribers were closed with CloseInsufficientState

	// QueuedBytes and QueuedMessages are the publications and presence
	// events waiting in the WebSocket connections' send queues and in the
	// event streams' buffers, or being written: what QueueBytes and
	// QueueMessages bound per connection, summed. Replies to commands are
	// not counted, as they are not bounded.
	QueuedBytes    int
	QueuedMessages int

	// WebSocket counts the hub's WebSocket connections, open and ended,
	// and their messages and wire bytes; see websocket.ServerStats.
	WebSocket websocket.ServerStats
}

// Stats returns the hub's counters. It reads each open connection's
// counters (websocket.Server.Stats): call it per scrape, not per message.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	rooms := len(h.rooms)
	h.mu.Unlock()
	return Stats{
		Connections:    int(h.sessions.Load()),
		EventStreams:   int(h.eventStreams.Load()),
		Rooms:          rooms,
		Subscriptions:  int(h.subscriptions.Load()),
		SlowConsumers:  h.slowConsumers.Load(),
		Publications:   h.publications.Load(),
		Repairs:        h.repairs.Load(),
		Resets:         h.resets.Load(),
		QueuedBytes:    int(h.queuedBytes.Load()),
		QueuedMessages: int(h.queuedMsgs.Load()),
		WebSocket:      h.ws.Stats(),
	}
}

// errShuttingDown is Ready's answer once Shutdown has begun.
var errShuttingDown = errors.New("hub: shutting down")

// Ready reports whether the hub can serve, for a readiness probe: nil while
// it accepts connections and its broker is usable (a Broker that implements
// ReadyChecker is asked; any other is taken as usable), an error that says
// why not otherwise. It is not ready from the moment Shutdown is called.
func (h *Hub) Ready(ctx context.Context) error {
	if h.ctx.Err() != nil {
		return errShuttingDown
	}
	if rc, ok := h.broker.(ReadyChecker); ok {
		if err := rc.Ready(ctx); err != nil {
			return fmt.Errorf("hub: broker not ready: %w", err)
		}
	}
	return nil
}

// Shutdown ends every event stream, closes every client connection as
// websocket.Server.Shutdown does (1001, or Options.ShutdownCode, spread over
// Options.DrainWindow), waits for them to end, and then closes the broker if
// the Hub made it. New connections and streams are refused with 503. When ctx
// ends first the remaining connections are dropped and ctx's error returned.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.cancel() // event streams end (clients reconnect elsewhere); rooms stop repairing
	err := h.ws.Shutdown(ctx)
	h.shutdownOne.Do(func() {
		if h.ownBroker {
			if cerr := h.broker.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

func offers(values []string, proto string) bool {
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == proto {
				return true
			}
		}
	}
	return false
}
