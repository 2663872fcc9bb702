// Package toxitest runs a Toxiproxy server in the test's own process, so
// that tests can put network faults (latency, dropped connections,
// partitions) between real peers on loopback without a separate binary or
// kernel netem.
package toxitest

import (
	"net/http/httptest"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/rs/zerolog"
)

// Server is a Toxiproxy server running in this process, with a client of
// its HTTP API.
type Server struct {
	Client *toxiclient.Client
}

// Start runs Toxiproxy's API on an httptest server. At the end of the test
// every proxy is stopped (its listener and connections closed) and the API
// server closed.
func Start(t testing.TB) *Server {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	api := httptest.NewServer(server.Routes())
	t.Cleanup(func() {
		server.Collection.Clear()
		api.Close()
	})
	return &Server{Client: toxiclient.NewClient(api.Listener.Addr().String())}
}

// Proxy creates an enabled proxy to upstream, listening on a free loopback
// port (proxy.Listen), which stays the same when the proxy is disabled and
// enabled again.
func (s *Server) Proxy(t testing.TB, name, upstream string) *toxiclient.Proxy {
	t.Helper()
	p, err := s.Client.CreateProxy(name, "127.0.0.1:0", upstream)
	if err != nil {
		t.Fatalf("creating the Toxiproxy proxy %s: %v", name, err)
	}
	if strings.HasSuffix(p.Listen, ":0") {
		t.Fatalf("Toxiproxy proxy %s listens on %s, want the port it was given", name, p.Listen)
	}
	return p
}
