package websocket

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// fakeClock is a HandshakeRate's clock that a test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestRate(rate float64, burst int) (*HandshakeRate, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	return &HandshakeRate{Rate: rate, Burst: burst, now: clock.now}, clock
}

func requestFrom(remoteAddr string) *http.Request {
	return &http.Request{RemoteAddr: remoteAddr, Header: http.Header{}}
}

// TestHandshakeRateBucket: a client gets Burst handshakes at once, then
// one per 1/Rate; a refusal says how long until the next token and spends
// nothing; another client has its own bucket.
func TestHandshakeRateBucket(t *testing.T) {
	h, clock := newTestRate(2, 3) // 2 per second, 3 at once
	a := requestFrom("192.0.2.1:1000")
	for i := range 3 {
		if _, ok := h.admit(a); !ok {
			t.Fatalf("handshake %d of the burst refused", i+1)
		}
	}
	wait, ok := h.admit(a)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th handshake: ok %v, wait %v; want refused, 500ms", ok, wait)
	}
	clock.advance(250 * time.Millisecond)
	if wait, ok := h.admit(a); ok || wait != 250*time.Millisecond {
		t.Fatalf("250ms later: ok %v, wait %v; want refused, 250ms (a refusal spends nothing)", ok, wait)
	}
	if _, ok := h.admit(requestFrom("192.0.2.2:1000")); !ok {
		t.Fatal("another address was refused")
	}
	clock.advance(250 * time.Millisecond)
	if _, ok := h.admit(requestFrom("192.0.2.1:2000")); !ok {
		t.Fatal("refused once a token had come back (another port, same address)")
	}
	if _, ok := h.admit(a); ok {
		t.Fatal("admitted with no token left")
	}
}

// TestHandshakeRateKeys: IPv6 addresses count by /64, IPv4-mapped ones as
// IPv4; ClientAddr replaces RemoteAddr, and its "" exempts the request.
func TestHandshakeRateKeys(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"fe80::1%eth0", "fe80::/64"},
		{"user-42", "user-42"},
	} {
		if got := clientKey(tc.in); got != tc.want {
			t.Errorf("clientKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}

	h, _ := newTestRate(1, 1)
	if _, ok := h.admit(requestFrom("[2001:db8:1:2::1]:1")); !ok {
		t.Fatal("first IPv6 handshake refused")
	}
	if _, ok := h.admit(requestFrom("[2001:db8:1:2::ffff]:2")); ok {
		t.Fatal("another address of the same /64 was not limited with the first")
	}

	h, _ = newTestRate(1, 1)
	h.ClientAddr = func(r *http.Request) string { return r.Header.Get("X-Real-IP") }
	proxied := func(ip string) *http.Request {
		r := requestFrom("10.0.0.1:5000") // the proxy
		r.Header.Set("X-Real-IP", ip)
		return r
	}
	if _, ok := h.admit(proxied("198.51.100.1")); !ok {
		t.Fatal("first client behind the proxy refused")
	}
	if _, ok := h.admit(proxied("198.51.100.2")); !ok {
		t.Fatal("second client behind the proxy refused: the limit is per proxy, not per client")
	}
	if _, ok := h.admit(proxied("198.51.100.1")); ok {
		t.Fatal("first client's second handshake admitted")
	}
	for range 5 {
		if _, ok := h.admit(proxied("")); !ok {
			t.Fatal("a request whose ClientAddr is empty was limited")
		}
	}
}

// TestHandshakeRateMemoryBound: a flood from many addresses never makes the
// limiter track more than MaxClients, and buckets that have refilled are
// forgotten, so that the limiter shrinks back once the flood is over.
func TestHandshakeRateMemoryBound(t *testing.T) {
	h, clock := newTestRate(10, 5) // refilled 0.5 s after the last handshake
	h.MaxClients = 1000
	for i := range 100_000 {
		h.admit(requestFrom(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)))
		if n := h.Clients(); n > 1000 {
			t.Fatalf("after %d addresses the limiter tracks %d, over MaxClients", i+1, n)
		}
	}
	// The most recent addresses are the ones remembered.
	last := requestFrom("10.1.134.159:1") // address 99999
	for range 4 {
		h.admit(last)
	}
	if _, ok := h.admit(last); ok {
		t.Error("the most recent address was forgotten: its 6th handshake passed a burst of 5")
	}
	clock.advance(400 * time.Millisecond)
	h.admit(requestFrom("192.0.2.1:1"))
	if n := h.Clients(); n != 1000 {
		t.Errorf("before the buckets refilled: %d tracked, want 1000", n)
	}
	clock.advance(time.Second)
	h.admit(requestFrom("192.0.2.2:1"))
	if n := h.Clients(); n != 1 {
		t.Errorf("once every other bucket refilled: %d tracked, want 1 (the newest)", n)
	}
}

// TestHandshakeRateTinyRate: a rate so small that its waits overflow a
// Duration still limits, and says to wait (a positive Retry-After).
func TestHandshakeRateTinyRate(t *testing.T) {
	h, clock := newTestRate(1e-12, 1)
	a := requestFrom("192.0.2.1:1000")
	if _, ok := h.admit(a); !ok {
		t.Fatal("the first handshake was refused")
	}
	clock.advance(time.Hour)
	if wait, ok := h.admit(a); ok || wait <= 0 {
		t.Fatalf("an hour later: ok %v, wait %v; want refused with a positive wait", ok, wait)
	}
}
