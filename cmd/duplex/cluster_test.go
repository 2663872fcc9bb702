package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// freeAddrs returns n loopback addresses with free ports.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().String())
		ln.Close()
	}
	return out
}

// Three duplex nodes form a NATS cluster by routes (-nats-cluster,
// -nats-routes, -nats-replicas 3), each with its own data directory: a
// publication on one node reaches a subscriber on another, and a client that
// comes back on a third recovers from its last position there.
func TestThreeNodeCluster(t *testing.T) {
	routes := freeAddrs(t, 3)
	// The nodes must start together: each waits for the cluster's JetStream
	// to have a leader, which takes two of them.
	var started []*launched
	for i := range 3 {
		started = append(started, launchRun(t, []string{"-addr", "127.0.0.1:0", "-nats-cluster", routes[i],
			"-nats-routes", strings.Join(routes, ","), "-nats-name", fmt.Sprintf("node%d", i), "-nats-replicas", "3"}, nil))
	}
	var nodes []*server
	for _, l := range started {
		nodes = append(nodes, l.await(t, 90*time.Second))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sub := dialHub(t, ctx, nodes[1].addr)
	var res struct{ Position hub.Position }
	json.Unmarshal(hubCall(t, ctx, sub, 2, map[string]any{"op": "subscribe", "room": "c"}), &res)
	pub := dialHub(t, ctx, nodes[0].addr)
	for i := 1; i <= 3; i++ {
		hubCall(t, ctx, pub, i+1, map[string]any{"op": "publish", "room": "c", "data": i})
	}
	var got []uint64
	for len(got) < 3 {
		msg, err := sub.Read(ctx)
		if err != nil {
			t.Fatalf("subscriber on node 1: %v after %d publications", err, len(got))
		}
		var m struct {
			Push   string
			Offset uint64
			Data   json.RawMessage
		}
		json.Unmarshal(msg.Data, &m)
		if m.Push == "pub" {
			if string(m.Data) != fmt.Sprint(len(got)+1) {
				t.Fatalf("publication %d has data %s", len(got)+1, m.Data)
			}
			got = append(got, m.Offset)
		}
	}
	sub.Close(websocket.StatusNormalClosure, "")
	// Back on node 2, from the position after the first publication.
	again := dialHub(t, ctx, nodes[2].addr)
	var rec struct {
		Recovered    *bool
		Publications []struct{ Offset uint64 }
	}
	since := hub.Position{Offset: got[0], Epoch: res.Position.Epoch}
	json.Unmarshal(hubCall(t, ctx, again, 2, map[string]any{"op": "subscribe", "room": "c", "since": since}), &rec)
	if rec.Recovered == nil || !*rec.Recovered || len(rec.Publications) != 2 || rec.Publications[0].Offset != got[1] {
		t.Fatalf("recovery on node 2 since %+v: recovered %v, %+v; want offsets %v", since, rec.Recovered, rec.Publications, got[1:])
	}
	t.Logf("3 nodes, R3: published on node 0, delivered live on node 1 (offsets %v), recovered on node 2", got)
}
