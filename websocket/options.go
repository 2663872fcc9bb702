package websocket

import (
	"net/http"
	"sync"
	"time"
)

// Defaults of the limits in Options.
const (
	DefaultReadLimit        = 16 << 20 // bytes per message
	DefaultWriteTimeout     = 10 * time.Second
	DefaultCloseTimeout     = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

// Options are the settings common to both sides of a connection. The zero
// value gives the defaults.
type Options struct {
	// ReadLimit is the largest message, in bytes, that Read and Reader accept;
	// a bigger one fails the connection with close code 1009. 0 means
	// DefaultReadLimit; -1 means no limit (only for trusted peers).
	ReadLimit int64

	// WriteTimeout bounds a write that has no context deadline of its own
	// (SendText, SendBinary, Flush and automatic pongs). 0 means
	// DefaultWriteTimeout; -1 means no bound. When a write times out the
	// connection is closed: a frame may have been cut.
	WriteTimeout time.Duration

	// CloseTimeout is how long Close waits for the peer's close frame.
	// 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration

	// PingInterval turns on keepalive: a ping is sent every interval and the
	// connection is closed when its pong does not arrive within PongTimeout
	// (default: PingInterval). Pongs are read by Read, so keepalive needs a
	// reading goroutine, as every connection should have anyway.
	PingInterval time.Duration
	PongTimeout  time.Duration

	// Compression configures permessage-deflate (RFC 7692). nil gives the
	// defaults: offered by Dial, accepted by Accept.
	Compression *CompressionOptions
}

// CompressionOptions configure permessage-deflate. The zero value gives the
// defaults.
//
// Memory: with context takeover a connection keeps, once it has sent or
// received a compressed message, the last 2^MaxWindowBits bytes of each
// direction (16 KiB in all by default); compressors and decompressors are
// pooled and held only while a message is compressed or read. With
// NoContextTakeover a connection keeps nothing between messages, and
// small messages compress less well.
type CompressionOptions struct {
	// Disabled turns compression off: Dial does not offer it and Accept
	// declines it.
	Disabled bool

	// Level is the flate compression level, 1 (fastest, the default) to 9.
	//
	// The peer may limit the window this side compresses with to 2^N bytes
	// (max_window_bits N; Duplex peers ask for 13 bits, 8 KiB, by default).
	// With the full window (15 bits) Level always applies. With a smaller
	// one it applies to every message sent whole (SendText, SendBinary,
	// Write, prepared messages) of at most 2^N bytes: the standard encoder
	// of that level is primed, with context takeover, with only as much
	// history as fits beside the message in the window, and since it sees
	// nothing else it cannot reference further back. A larger message, or
	// one streamed through Writer (its size unknown), needs an encoder that
	// bounds its references by the window itself, and that encoder has a
	// single level of its own: Level does not apply to it.
	Level int

	// Threshold is the smallest message, in bytes, that is compressed;
	// smaller ones are sent as they are. 0 means 64; -1 compresses all.
	Threshold int

	// Binary compresses binary messages too; by default only text messages
	// are compressed (binary data is often compressed already).
	Binary bool

	// NoContextTakeover compresses every message on its own, in both
	// directions, so that no connection keeps history between messages.
	NoContextTakeover bool

	// MaxWindowBits bounds, 8 to 15, the history a connection keeps per
	// direction with context takeover: the peer is asked to compress with a
	// window no larger (when it can be asked; otherwise it is asked not to
	// keep context), and no more than this much of what was sent primes the
	// compressor. 0 means 13 (8 KiB).
	MaxWindowBits int
}

const (
	defaultCompressionThreshold = 64
	defaultMaxWindowBits        = 13
)

func (co *CompressionOptions) maxWindowBits() int {
	if co == nil || co.MaxWindowBits == 0 {
		return defaultMaxWindowBits
	}
	return min(max(co.MaxWindowBits, 8), 15)
}

func (co *CompressionOptions) enabled() bool { return co == nil || !co.Disabled }

// AcceptOptions configure Accept and Open. A nil *AcceptOptions gives the
// defaults.
type AcceptOptions struct {
	// Subprotocols the server speaks, in order of preference. The first one
	// the client also offers is chosen; none is chosen when there is no match.
	Subprotocols []string

	// OriginPatterns are origins allowed besides the request's own host, as
	// path.Match patterns matched against the Origin's host ("*.example.com",
	// "localhost:*") or, when a pattern contains "://", the whole origin
	// ("https://*.example.com"). By default only same-host origins are
	// accepted, which protects a cookie-authenticated endpoint from
	// cross-site WebSocket hijacking.
	OriginPatterns []string

	// InsecureSkipVerifyOrigin accepts every Origin.
	InsecureSkipVerifyOrigin bool

	// ResponseHeader is added to the 101 response (cookies, for example).
	ResponseHeader http.Header

	// HandshakeTimeout bounds writing the handshake response.
	// 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	Options
}

// DialOptions configure Dial. A nil *DialOptions gives the defaults.
type DialOptions struct {
	// HTTPClient sends the handshake request; its Transport decides proxies
	// and TLS. By default a transport honouring the proxy environment
	// variables is used. With a custom client, cancelling a Read's context
	// closes the connection instead of only ending the Read. For HTTP/2 the
	// Transport must be an *http.Transport: Dial uses its TLS config,
	// dialers and timeouts, and WebSockets to one host share one HTTP/2
	// connection per Transport.
	HTTPClient *http.Client

	// HTTPVersion chooses HTTP/1.1 (RFC 6455) or HTTP/2 (RFC 8441) for the
	// handshake. The default, HTTPAuto, uses HTTP/2 over TLS when the server
	// supports it and falls back to HTTP/1.1 otherwise.
	HTTPVersion HTTPVersion

	// Header is sent with the handshake request (Authorization, Cookie,
	// Origin, User-Agent; "Host" sets the request's Host).
	Header http.Header

	// Subprotocols offered to the server, in order of preference.
	Subprotocols []string

	// HandshakeTimeout bounds the whole handshake (dialing, TLS, the HTTP
	// exchange) when ctx has no earlier deadline. 0 means
	// DefaultHandshakeTimeout, as for Accept.
	HandshakeTimeout time.Duration

	Options
}

// settings are the resolved Options of one connection.
type settings struct {
	readLimit    int64
	writeTimeout time.Duration
	closeTimeout time.Duration
	pingInterval time.Duration
	pongTimeout  time.Duration
}

// sharedSettings returns a *settings equal to s, the same one for every
// connection with equal settings: servers open their connections with the
// same Options, and a pointer in each Conn is 32 bytes less than a copy.
// Past maxSharedSettings distinct values (Options made per connection), a
// connection gets a copy of its own.
func sharedSettings(s settings) *settings {
	settingsTable.Lock()
	defer settingsTable.Unlock()
	if p := settingsTable.m[s]; p != nil {
		return p
	}
	p := new(settings) // not &s, which would move s to the heap on every call
	*p = s
	if len(settingsTable.m) < maxSharedSettings {
		if settingsTable.m == nil {
			settingsTable.m = make(map[settings]*settings)
		}
		settingsTable.m[s] = p
	}
	return p
}

var settingsTable struct {
	sync.Mutex
	m map[settings]*settings
}

const maxSharedSettings = 64

func (o *Options) resolve() settings {
	s := settings{
		readLimit:    DefaultReadLimit,
		writeTimeout: DefaultWriteTimeout,
		closeTimeout: DefaultCloseTimeout,
	}
	if o == nil {
		return s
	}
	if o.ReadLimit != 0 {
		s.readLimit = o.ReadLimit
	}
	if o.WriteTimeout > 0 {
		s.writeTimeout = o.WriteTimeout
	} else if o.WriteTimeout < 0 {
		s.writeTimeout = 0
	}
	if o.CloseTimeout > 0 {
		s.closeTimeout = o.CloseTimeout
	}
	if o.PingInterval > 0 {
		s.pingInterval = o.PingInterval
		s.pongTimeout = o.PongTimeout
		if s.pongTimeout <= 0 {
			s.pongTimeout = o.PingInterval
		}
	}
	return s
}
