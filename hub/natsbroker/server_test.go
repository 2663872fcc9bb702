package natsbroker

import (
	"context"
	"strings"
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

// The cluster options are checked before anything starts.
func TestServerClusterOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		opts ServerOptions
		want string
	}{
		{ServerOptions{Dir: dir, Cluster: "c", ClusterListen: "127.0.0.1:0"}, "needs a Name"},
		{ServerOptions{Dir: dir, Name: "n", Cluster: "c"}, "needs ClusterListen"},
		{ServerOptions{Dir: dir, Name: "n", ClusterListen: "127.0.0.1:0"}, "need a Cluster name"},
		{ServerOptions{Dir: dir, Name: "n", Routes: []string{"127.0.0.1:1"}}, "need a Cluster name"},
		{ServerOptions{Dir: dir, Name: "n", Cluster: "c", ClusterListen: "127.0.0.1:0", Routes: []string{"nohost"}}, "route"},
		{ServerOptions{Dir: dir, Name: "n", Cluster: "c", ClusterListen: "127.0.0.1"}, "cluster address"},
	} {
		if _, err := StartServer(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
	so, err := serverOptions(&ServerOptions{Dir: dir, Name: "n", Cluster: "c", ClusterListen: "0.0.0.0:6222",
		Routes: []string{"10.0.0.1:6222", "nats-route://10.0.0.2:6222"}})
	if err != nil {
		t.Fatal(err)
	}
	if so.DontListen || so.Host != "127.0.0.1" || !so.Cluster.NoAdvertise || so.Cluster.Port != 6222 ||
		len(so.Routes) != 2 || so.Routes[0].String() != "nats-route://10.0.0.1:6222" || so.Routes[1].Host != "10.0.0.2:6222" {
		t.Fatalf("%+v", so)
	}
}
