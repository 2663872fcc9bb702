package natsbroker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
)

// HandOver moves the leadership of the streams a node leads to another
// node, and only that node's; CaughtUp says a node restarted on its
// directory has caught up only once its replica holds what was stored
// while it was away.
func TestHandOverAndCaughtUp(t *testing.T) {
	c := newCluster(t, 3, Options{Replicas: 3})
	a := c.node("A")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sent := 0
	payload := []byte(`"` + strings.Repeat("x", 1000) + `"`) // so that catching up takes a while
	publish := func(n int) uint64 {
		var last uint64
		for range n {
			sent++
			pos, err := a.b.Publish(ctx, "r", hub.Message{Data: payload, Key: fmt.Sprint(sent)})
			if err != nil {
				t.Fatal(err)
			}
			last = pos.Offset
		}
		return last
	}
	publish(10)

	leader := c.info(a).Cluster.Leader
	for _, nd := range c.nodes {
		if nd.name == leader {
			continue
		}
		if streams, err := nd.srv.HandOver(ctx); err != nil || slices.Contains(streams, a.b.stream) {
			t.Fatalf("HandOver on %s, not the leader: %v, %v", nd.name, streams, err)
		}
	}
	l := c.node(leader)
	t0 := time.Now()
	streams, err := l.srv.HandOver(ctx)
	if err != nil || !slices.Contains(streams, a.b.stream) {
		t.Fatalf("HandOver on the leader %s: %v, %v", leader, streams, err)
	}
	now := c.info(a).Cluster.Leader
	if now == leader || now == "" {
		t.Fatalf("the stream's leader is %q after %s handed over", now, leader)
	}
	t.Logf("%s handed over %v in %v; the stream's leader is now %s", leader, streams, time.Since(t0).Round(time.Millisecond), now)

	// A follower away while the others store, then back on its directory.
	var x *cnode
	for _, nd := range c.nodes {
		if nd != a && nd.name != now {
			x = nd
		}
	}
	c.kill(x)
	last := publish(3000)
	// Asked from the first moment the server is back (StartServer returns
	// once it is current with the meta leader), through another node's
	// broker (the leader's state is the same whoever asks).
	c.stop(x)
	if err := c.startServer(x); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	waited := 0
	var notYet []string
	for {
		err := a.b.CaughtUp(ctx, x.srv)
		if err == nil {
			break
		}
		if len(notYet) < 3 || waited%50 == 0 {
			notYet = append(notYet, err.Error())
		}
		waited++
		if time.Since(t1) > 20*time.Second {
			t.Fatalf("%s not caught up 20s after its restart: %v", x.name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%s before it caught up: %q", x.name, notYet)
	st, ok := localState(t, x, a.b.stream)
	if !ok || st.LastSeq < last {
		t.Fatalf("%s says caught up but its replica ends at %d, before %d", x.name, st.LastSeq, last)
	}
	if err := c.connect(x); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s caught up %v after its restart (%d checks said not yet), its replica at %d", x.name, time.Since(t1).Round(time.Millisecond), waited, st.LastSeq)
}
