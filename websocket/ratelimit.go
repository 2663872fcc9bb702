package websocket

import (
	"container/list"
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// ErrRateLimited is matched (errors.Is) by the *HandshakeError of a request
// refused by a Server's HandshakeRate: the client got 429 Too Many Requests
// with Retry-After.
var ErrRateLimited = errors.New("websocket: too many handshakes from this client")

// Defaults of HandshakeRate.
const (
	// DefaultRateBurst is the least Burst: a page commonly opens a few
	// WebSockets at once, and a reconnecting client retries.
	DefaultRateBurst = 10
	// DefaultRateClients is MaxClients' default. A tracked client costs
	// about 200 bytes, so the limiter holds at most about 13 MiB.
	DefaultRateClients = 1 << 16
)

// HandshakeRate limits how fast each client may open WebSockets, so that one
// client (a buggy reconnect loop, a flood from one host) cannot take the
// handshakes and connection places that others need. Each client has a
// token bucket: Rate handshakes per second sustained, up to Burst at once.
// A request over it is refused before the handshake, and before it takes a
// connection place, with 429 Too Many Requests, a Retry-After header that
// says when the next one would pass, and a message; Open returns a
// *HandshakeError that matches ErrRateLimited. A request refused with 429
// spends no token, so a client that keeps trying gets in as soon as it
// may; one that passes the limit and is then refused at the connection
// cap (503) has spent its token, as its handshake would have.
//
// Clients are told apart by their address: the IP of the request's
// RemoteAddr, an IPv6 address by its /64 prefix, which is what one host or
// one subscriber is usually given. Behind a reverse proxy every request
// comes from the proxy: set ClientAddr.
//
// Memory is bounded: a client's bucket is forgotten once it has refilled
// (the client was quiet for Burst/Rate seconds, so a new bucket would be
// the same), and at most MaxClients are kept; past that the least recently
// seen is forgotten. A flood from more than MaxClients addresses therefore
// loosens the limit for the addresses forgotten; the connection cap
// (MaxConnections, ConnLimit) still holds.
//
// Set the same *HandshakeRate as the HandshakeRate of several Servers to
// limit a client's handshakes to all of them together. A HandshakeRate must
// not be copied after first use, and its fields must not change once it is
// in use.
type HandshakeRate struct {
	// Rate is the handshakes per second a client may sustain; 0 or less
	// means no limit.
	Rate float64

	// Burst is how many handshakes a client may make at once after a quiet
	// spell; 0 means DefaultRateBurst, or Rate rounded up when that is
	// more.
	Burst int

	// MaxClients bounds the clients tracked at once; 0 means
	// DefaultRateClients.
	MaxClients int

	// ClientAddr, when set, returns the address of a request's client in
	// place of RemoteAddr's IP: behind a reverse proxy, the address the
	// proxy passes on in a header that only it can set (a client can set
	// any header it likes on a request that does not go through the
	// proxy). An IP address is grouped as RemoteAddr's is (IPv6 by /64);
	// any other string (a user, an API key) is a client of its own; ""
	// exempts the request from the limit.
	ClientAddr func(r *http.Request) string

	mu      sync.Mutex
	clients map[string]*list.Element // of *rateBucket
	recent  list.List                // buckets, the most recently seen first
	now     func() time.Time         // time.Now; a test's clock
}

// rateBucket is one client's tokens, as they were at the time at.
type rateBucket struct {
	key    string
	tokens float64
	at     time.Time
}

func (h *HandshakeRate) burst() float64 {
	if h.Burst > 0 {
		return float64(h.Burst)
	}
	return max(DefaultRateBurst, math.Ceil(h.Rate))
}

func (h *HandshakeRate) maxClients() int {
	if h.MaxClients > 0 {
		return h.MaxClients
	}
	return DefaultRateClients
}

// Clients returns how many clients the limiter tracks now.
func (h *HandshakeRate) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// admit spends one of the request's client's tokens, or reports false and
// how long until the client has one. A nil HandshakeRate, or one without a
// Rate, admits everything.
func (h *HandshakeRate) admit(r *http.Request) (wait time.Duration, ok bool) {
	if h == nil || h.Rate <= 0 {
		return 0, true
	}
	var key string
	if h.ClientAddr != nil {
		if key = h.ClientAddr(r); key == "" {
			return 0, true
		}
		key = clientKey(key)
	} else {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		key = clientKey(host)
	}
	burst := h.burst()
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.now != nil {
		now = h.now()
	}
	if h.clients == nil {
		h.clients = make(map[string]*list.Element)
	}
	h.forgetRefilled(now, burst)
	var b *rateBucket
	if e := h.clients[key]; e != nil {
		b = e.Value.(*rateBucket)
		b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*h.Rate)
		b.at = now
		h.recent.MoveToFront(e)
	} else {
		if len(h.clients) >= h.maxClients() {
			h.forget(h.recent.Back())
		}
		b = &rateBucket{key: key, tokens: burst, at: now}
		h.clients[key] = h.recent.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return seconds((1 - b.tokens) / h.Rate), false
}

// seconds converts s seconds to a Duration, clamped to the largest one: a
// tiny Rate gives waits beyond 292 years, whose conversion would overflow
// (Go leaves the result to the implementation; on amd64 it is negative,
// which would turn the limit off).
func seconds(s float64) time.Duration {
	if d := s * float64(time.Second); d < float64(math.MaxInt64) {
		return time.Duration(d)
	}
	return math.MaxInt64
}

// forgetRefilled forgets the buckets that have refilled by now. The list is
// in the order the clients were last seen, and a bucket last seen Burst/Rate
// seconds ago is full whatever it held then: so the oldest are looked at
// until one is younger, which costs one look per bucket ever made.
func (h *HandshakeRate) forgetRefilled(now time.Time, burst float64) {
	refill := seconds(burst / h.Rate)
	for e := h.recent.Back(); e != nil && now.Sub(e.Value.(*rateBucket).at) >= refill; e = h.recent.Back() {
		h.forget(e)
	}
}

func (h *HandshakeRate) forget(e *list.Element) {
	delete(h.clients, e.Value.(*rateBucket).key)
	h.recent.Remove(e)
}

// clientKey is the limiter's key for a client address: an IPv4 address as
// it is, an IPv6 address as its /64 prefix (an IPv4-mapped one as IPv4),
// anything else as it is.
func clientKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// refuseRateLimited answers a request over the HandshakeRate with 429,
// Retry-After (whole seconds, rounded up) and a message, before any upgrade.
func refuseRateLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) *HandshakeError {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	herr := &HandshakeError{Status: http.StatusTooManyRequests, cause: ErrRateLimited,
		Message: "too many WebSocket handshakes from your address: connect again in " + strconv.Itoa(secs) + " s (see Retry-After)"}
	writeRefusal(w, r, herr, secs)
	return herr
}
