package main

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/duplexws/duplex/websocket"
)

// handshakeRate is the rate limit of the handshake options, nil when off.
func handshakeRate(h handshakeOptions) *websocket.HandshakeRate {
	if h.rate <= 0 {
		return nil
	}
	rate := &websocket.HandshakeRate{Rate: h.rate, Burst: h.burst}
	if h.clientIPHeader != "" {
		rate.ClientAddr = clientAddrFrom(h.clientIPHeader)
	}
	return rate
}

// clientAddrFrom returns a HandshakeRate.ClientAddr that takes the client's
// address from the header a reverse proxy sets. Of a list (X-Forwarded-For,
// over one or several header lines) it takes the last address: the one the
// nearest proxy added, where the earlier ones are whatever the client sent.
// A request without a usable address in the header (one that did not come
// through the proxy, such as a probe) is limited by its RemoteAddr.
func clientAddrFrom(header string) func(*http.Request) string {
	return func(r *http.Request) string {
		if vs := r.Header.Values(header); len(vs) > 0 {
			last := vs[len(vs)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return a.String()
			}
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
}
