package natsbroker

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
)

func presenceOf(t *testing.T, b *Broker, room string) ([]string, hub.PresenceStats) {
	t.Helper()
	ctx := context.Background()
	list, err := b.Presence(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := b.PresenceStats(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.Client+"/"+c.User+string(c.Info))
	}
	slices.Sort(ids)
	return ids, stats
}

func kinds(evs []hub.Event) string {
	var s []string
	for _, ev := range evs {
		switch ev.Kind {
		case hub.EventJoin:
			s = append(s, "join:"+ev.Client.Client)
		case hub.EventLeave:
			s = append(s, "leave:"+ev.Client.Client)
		}
	}
	return strings.Join(s, " ")
}

// Join and leave reach the room's subscribers on any node; the list and the
// counts (clients, distinct users, an anonymous client counting as a user of
// its own) follow, across nodes.
func TestPresence(t *testing.T) {
	n := newNode(t, "", Options{})
	other := n.broker(Options{})
	ctx := context.Background()
	rec := subscribe(t, n.b, "p")
	c1 := hub.ClientInfo{Client: "c1", User: "ana"}
	c2 := hub.ClientInfo{Client: "c2", User: "ana", Info: json.RawMessage(`{"tab":2}`)}
	c3 := hub.ClientInfo{Client: "c3"}
	c4 := hub.ClientInfo{Client: "c4", User: "bo.b*"}
	for _, c := range []hub.ClientInfo{c1, c2} {
		if err := other.Join(ctx, "p", c); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []hub.ClientInfo{c3, c4} {
		if err := n.b.Join(ctx, "p", c); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.b.Join(ctx, "elsewhere", c1); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "4 joins", func(evs []hub.Event) bool { return len(evs) == 4 })
	ids, stats := presenceOf(t, n.b, "p")
	if strings.Join(ids, " ") != `c1/ana c2/ana{"tab":2} c3/ c4/bo.b*` || stats != (hub.PresenceStats{Clients: 4, Users: 3}) {
		t.Fatalf("presence %v %+v", ids, stats)
	}
	// Joining again refreshes the info without a second event.
	c1.Info = json.RawMessage(`{"v":2}`)
	if err := other.Join(ctx, "p", c1); err != nil {
		t.Fatal(err)
	}
	if err := other.Leave(ctx, "p", c2); err != nil {
		t.Fatal(err)
	}
	evs := rec.wait(t, "leave", func(evs []hub.Event) bool { return len(evs) == 5 })
	if got := kinds(evs); !strings.HasSuffix(got, "leave:c2") || strings.Count(got, "join:c1") != 1 {
		t.Fatalf("events %s", got)
	}
	ids, stats = presenceOf(t, n.b, "p")
	if strings.Join(ids, " ") != `c1/ana{"v":2} c3/ c4/bo.b*` || stats != (hub.PresenceStats{Clients: 3, Users: 3}) {
		t.Fatalf("presence %v %+v", ids, stats)
	}
	for _, c := range []hub.ClientInfo{c1} {
		if err := other.Leave(ctx, "p", c); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.b.Leave(ctx, "p", c3); err != nil {
		t.Fatal(err)
	}
	if err := n.b.Leave(ctx, "p", hub.ClientInfo{Client: "never"}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "leaves", func(evs []hub.Event) bool { return len(evs) == 7 })
	ids, stats = presenceOf(t, n.b, "p")
	if strings.Join(ids, " ") != `c4/bo.b*` || stats != (hub.PresenceStats{Clients: 1, Users: 1}) {
		t.Fatalf("presence %v %+v", ids, stats)
	}
	if _, stats = presenceOf(t, n.b, "elsewhere"); stats != (hub.PresenceStats{Clients: 1, Users: 1}) {
		t.Fatalf("other room %+v", stats)
	}
}

// A node that dies without leaving stops refreshing its entries: they are
// gone within PresenceTTL. A live node keeps its entries past it.
func TestPresenceExpiresWithItsNode(t *testing.T) {
	opts := Options{PresenceTTL: time.Second}
	n := newNode(t, "", opts)
	ctx := context.Background()
	nc, err := n.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	dying, err := New(ctx, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := dying.Join(ctx, "p", hub.ClientInfo{Client: "gone"}); err != nil {
		t.Fatal(err)
	}
	if err := n.b.Join(ctx, "p", hub.ClientInfo{Client: "stays"}); err != nil {
		t.Fatal(err)
	}
	nc.Close() // the node is cut off: no leave, no refresh
	if _, stats := presenceOf(t, n.b, "p"); stats.Clients != 2 {
		t.Fatalf("before expiry: %+v", stats)
	}
	time.Sleep(2500 * time.Millisecond)
	ids, stats := presenceOf(t, n.b, "p")
	if strings.Join(ids, " ") != "stays/" || stats != (hub.PresenceStats{Clients: 1, Users: 1}) {
		t.Fatalf("after expiry: %v %+v", ids, stats)
	}
	dying.Close()
}
