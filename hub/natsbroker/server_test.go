package natsbroker

import (
	"context"
	"testing"

	"github.com/duplexws/duplex/hub"
)

// Without Listen the embedded server has no socket; with it, a broker
// connects by URL as it would to an external NATS.
func TestServerListenAndConnectByURL(t *testing.T) {
	quiet := startServer(t, t.TempDir())
	if quiet.ClientURL() != "" {
		t.Fatalf("a server without Listen has the address %q", quiet.ClientURL())
	}
	quiet.Shutdown()

	srv, err := StartServer(ServerOptions{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if srv.ClientURL() == "" {
		t.Fatal("no client URL")
	}
	nc, err := Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := New(context.Background(), nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := publish(t, b, "r", "1")
	h := history(t, b, "r", hub.HistoryQuery{Limit: 1})
	if len(h.Publications) != 1 || h.Latest != p {
		t.Fatalf("%+v", h)
	}
	if _, err := StartServer(ServerOptions{}); err == nil {
		t.Fatal("a server without Dir started")
	}
}
