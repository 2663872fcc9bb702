package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/nats-io/nats.go/jetstream"
)

var _ hub.Broker = (*Broker)(nil)

// Offsets increase per room (not contiguously: the rooms share the stream's
// sequence), and every subscriber sees each room's publications chained by
// Prev, whichever node published them, with rooms interleaved.
func TestOffsetsIncreaseAndPrevChainsPerRoom(t *testing.T) {
	n := newNode(t, "", Options{})
	other := n.broker(Options{}) // a second node publishing into the same rooms
	rooms := []string{"a", "b", "c"}
	recs := map[string]*recorder{}
	for _, r := range rooms {
		recs[r] = subscribe(t, n.b, r)
	}
	last := map[string]hub.Position{}
	var epoch string
	for i := 0; i < 60; i++ {
		room := rooms[(i*7+i/3)%3]
		via := n.b
		if i%2 == 1 {
			via = other
		}
		pos := publish(t, via, room, fmt.Sprint(i))
		if epoch == "" {
			epoch = pos.Epoch
		}
		if pos.Epoch != epoch || pos.Offset <= last[room].Offset {
			t.Fatalf("publish %d to %s: position %+v after %+v", i, room, pos, last[room])
		}
		last[room] = pos
	}
	for _, room := range rooms {
		want := last[room].Offset
		evs := recs[room].wait(t, "room "+room, func(evs []hub.Event) bool {
			ps := pubs(evs)
			return len(ps) > 0 && ps[len(ps)-1].Offset == want
		})
		prev := uint64(0)
		for _, p := range pubs(evs) {
			if p.Prev != prev || p.Epoch != epoch || p.Room != room || p.Time.IsZero() {
				t.Fatalf("room %s: publication %+v does not follow %d", room, p, prev)
			}
			prev = p.Offset
		}
		h := history(t, n.b, room, hub.HistoryQuery{Limit: 100})
		if fmt.Sprint(offsets(h.Publications)) != fmt.Sprint(offsets(pubs(evs))) || h.Latest != last[room] {
			t.Fatalf("room %s: history %v latest %+v, live %v last %+v", room, offsets(h.Publications), h.Latest, offsets(pubs(evs)), last[room])
		}
	}
}

// History answers since, limit and reverse as the memory broker does, with
// Prev chained from Since; From and Time come back as stored.
func TestHistorySinceLimitReverse(t *testing.T) {
	n := newNode(t, "", Options{})
	ctx := context.Background()
	var pos []hub.Position
	for i := 1; i <= 10; i++ {
		publish(t, n.b, "other", "0") // interleave: offsets not contiguous
		from := &hub.ClientInfo{Client: "c1", User: "ana", Info: json.RawMessage(`{"name": "Ana",
 "x": 1}`)}
		p, err := n.b.Publish(ctx, "h", hub.Message{Data: json.RawMessage(fmt.Sprint(i)), From: from})
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, p)
	}
	all := history(t, n.b, "h", hub.HistoryQuery{Limit: 100})
	if len(all.Publications) != 10 || all.Latest != pos[9] {
		t.Fatalf("all: %v latest %+v", offsets(all.Publications), all.Latest)
	}
	if p := all.Publications[0]; p.From == nil || p.From.User != "ana" || string(p.From.Info) != `{"name":"Ana","x":1}` || p.Time.IsZero() {
		t.Fatalf("from/time not kept: %+v %+v", p.From, p.Time)
	}
	for _, tc := range []struct {
		since   int // index into pos, -1 for none
		limit   int
		reverse bool
		want    string
	}{
		{-1, 3, false, "1 2 3 "},
		{-1, 3, true, "10 9 8 "},
		{-1, 0, false, ""},
		{3, 2, false, "5 6 "},
		{3, 100, false, "5 6 7 8 9 10 "},
		{3, 2, true, "10 9 "},
		{9, 5, false, ""},
		{3, 0, false, ""},
	} {
		q := hub.HistoryQuery{Limit: tc.limit, Reverse: tc.reverse}
		prev := uint64(0)
		if tc.since >= 0 {
			q.Since = &pos[tc.since]
			prev = pos[tc.since].Offset
		}
		h := history(t, n.b, "h", q)
		if got := datas(h.Publications); got != tc.want || h.Latest != pos[9] {
			t.Errorf("%+v: got %q latest %+v, want %q", tc, got, h.Latest, tc.want)
		}
		if tc.since >= 0 && !tc.reverse {
			for _, p := range h.Publications {
				if p.Prev != prev {
					t.Errorf("%+v: %d has Prev %d, want %d", tc, p.Offset, p.Prev, prev)
				}
				prev = p.Offset
			}
		}
	}
	// An empty room's position is the stream's last sequence: a later
	// publication recovers from it.
	empty := history(t, n.b, "empty", hub.HistoryQuery{})
	if empty.Latest.Epoch != pos[0].Epoch || empty.Latest.Offset != pos[9].Offset {
		t.Fatalf("empty room latest %+v", empty.Latest)
	}
	p := publish(t, n.b, "empty", `"first"`)
	h := history(t, n.b, "empty", hub.HistoryQuery{Since: &empty.Latest, Limit: 10})
	if len(h.Publications) != 1 || h.Publications[0].Position != p || h.Publications[0].Prev != empty.Latest.Offset {
		t.Fatalf("since the empty room's position: %+v", h.Publications)
	}
	// Since the room's latest: nothing, recoverable.
	h = history(t, n.b, "h", hub.HistoryQuery{Since: &pos[9], Limit: 10})
	if len(h.Publications) != 0 {
		t.Fatalf("since latest: %v", offsets(h.Publications))
	}
}

func unrecoverable(t *testing.T, b *Broker, room string, since hub.Position, why string) {
	t.Helper()
	_, err := b.History(context.Background(), room, hub.HistoryQuery{Since: &since, Limit: 10})
	if !errors.Is(err, hub.ErrUnrecoverable) {
		t.Fatalf("%s: since %+v: err %v, want ErrUnrecoverable", why, since, err)
	}
	_, err = b.History(context.Background(), room, hub.HistoryQuery{Since: &since})
	if !errors.Is(err, hub.ErrUnrecoverable) {
		t.Fatalf("%s (limit 0): since %+v: err %v, want ErrUnrecoverable", why, since, err)
	}
}

func recoverable(t *testing.T, b *Broker, room string, since hub.Position, want int) []hub.Publication {
	t.Helper()
	h, err := b.History(context.Background(), room, hub.HistoryQuery{Since: &since, Limit: 100})
	if err != nil {
		t.Fatalf("since %+v: %v", since, err)
	}
	if len(h.Publications) != want {
		t.Fatalf("since %+v: %d publications, want %d", since, len(h.Publications), want)
	}
	return h.Publications
}

func TestUnrecoverable(t *testing.T) {
	t.Run("other epoch", func(t *testing.T) {
		n := newNode(t, "", Options{})
		p := publish(t, n.b, "r", "1")
		unrecoverable(t, n.b, "r", hub.Position{Offset: p.Offset, Epoch: "0123456789abcdef"}, "foreign epoch")
		unrecoverable(t, n.b, "r", hub.Position{Offset: p.Offset + 5, Epoch: p.Epoch}, "offset the stream never had")
		recoverable(t, n.b, "r", p, 0)
	})
	t.Run("trimmed by count", func(t *testing.T) {
		n := newNode(t, "", Options{HistorySize: 3})
		var ps []hub.Position
		for i := 0; i < 6; i++ {
			ps = append(ps, publish(t, n.b, "r", fmt.Sprint(i)))
			publish(t, n.b, "s", "0")
		}
		// Stored: 3 4 5. Since 2 (stored? no: trimmed) is not vouched for
		// even though 3 follows it: with non-contiguous offsets the broker
		// cannot tell that nothing lay between 2 and 3 once 2 is gone.
		unrecoverable(t, n.b, "r", ps[1], "trimmed past since")
		unrecoverable(t, n.b, "r", ps[2], "since trimmed, room full")
		recoverable(t, n.b, "r", ps[3], 2)
		recoverable(t, n.b, "r", ps[5], 0)
	})
	t.Run("aged out", func(t *testing.T) {
		n := newNode(t, "", Options{HistoryTTL: time.Second})
		p1 := publish(t, n.b, "r", "1")
		p2 := publish(t, n.b, "r", "2")
		time.Sleep(1500 * time.Millisecond)
		p3 := publish(t, n.b, "r", "3")
		unrecoverable(t, n.b, "r", p1, "aged out")
		// p2 was the room's last when it aged out: whether anything came
		// after it and aged out too cannot be told, unless the stream's
		// first sequence says nothing after it was removed.
		recoverable(t, n.b, "r", p2, 1) // here nothing after p2 aged: the stream starts at p3
		recoverable(t, n.b, "r", p3, 0)
	})
	t.Run("aged out past since", func(t *testing.T) {
		n := newNode(t, "", Options{HistoryTTL: time.Second})
		p1 := publish(t, n.b, "r", "1")
		publish(t, n.b, "r", "2")
		publish(t, n.b, "other", "x")
		time.Sleep(1500 * time.Millisecond)
		publish(t, n.b, "r", "3")
		unrecoverable(t, n.b, "r", p1, "the publication after since aged out")
	})
	t.Run("purged room", func(t *testing.T) {
		n := newNode(t, "", Options{})
		p1 := publish(t, n.b, "r", "1")
		publish(t, n.b, "r", "2")
		q := publish(t, n.b, "q", "1")
		if err := n.b.Purge(context.Background(), "r"); err != nil {
			t.Fatal(err)
		}
		unrecoverable(t, n.b, "r", p1, "purged")
		h := history(t, n.b, "r", hub.HistoryQuery{Limit: 10})
		if len(h.Publications) != 0 {
			t.Fatalf("purged room still has %v", offsets(h.Publications))
		}
		p3 := publish(t, n.b, "r", "3")
		unrecoverable(t, n.b, "r", p1, "purged, then published")
		recoverable(t, n.b, "r", h.Latest, 1)
		recoverable(t, n.b, "r", p3, 0)
		recoverable(t, n.b, "q", q, 0) // other rooms keep their history
		if p3.Epoch != p1.Epoch {
			t.Fatalf("epoch changed on a purge: the stream's epoch covers all rooms")
		}
	})
	t.Run("recreated stream", func(t *testing.T) {
		n := newNode(t, "", Options{})
		for i := 0; i < 5; i++ {
			publish(t, n.b, "r", fmt.Sprint(i))
		}
		old := publish(t, n.b, "r", "old")
		js, _ := jetstream.New(n.nc)
		if err := js.DeleteStream(context.Background(), "DUPLEX"); err != nil {
			t.Fatal(err)
		}
		// The broker makes the stream again on the next publish, in a new
		// epoch; offsets start over.
		for i := 0; i < 10; i++ {
			p := publish(t, n.b, "r", fmt.Sprint(i))
			if p.Epoch == old.Epoch {
				t.Fatalf("publication %d in the recreated stream has the old epoch", i)
			}
		}
		unrecoverable(t, n.b, "r", old, "recreated stream, old epoch")
		h := history(t, n.b, "r", hub.HistoryQuery{Limit: 100})
		if len(h.Publications) != 10 || h.Latest.Offset != 10 {
			t.Fatalf("recreated: %v latest %+v", offsets(h.Publications), h.Latest)
		}
	})
	t.Run("empty room since zero", func(t *testing.T) {
		n := newNode(t, "", Options{HistoryTTL: time.Second})
		h := history(t, n.b, "r", hub.HistoryQuery{})
		if h.Latest.Offset != 0 {
			t.Fatalf("fresh stream: latest %+v", h.Latest)
		}
		publish(t, n.b, "r", "1")
		recoverable(t, n.b, "r", h.Latest, 1) // nothing was ever removed
		time.Sleep(1500 * time.Millisecond)
		publish(t, n.b, "r", "2")
		unrecoverable(t, n.b, "r", h.Latest, "the first publication aged out")
	})
}

// A publish key makes a retried publish return the first one's position
// without storing it again, per room, within the window.
func TestIdempotentPublish(t *testing.T) {
	n := newNode(t, "", Options{})
	other := n.broker(Options{})
	ctx := context.Background()
	m := hub.Message{Data: json.RawMessage(`"once"`), Key: "k1\r\nNats-Msg-Id: x"}
	p1, err := n.b.Publish(ctx, "r", m)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, n.b, "r", `"between"`)
	p2, err := other.Publish(ctx, "r", m) // retried through another node
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Fatalf("retry got %+v, first %+v", p2, p1)
	}
	p3, err := n.b.Publish(ctx, "s", m) // same key, other room: its own publication
	if err != nil || p3.Offset == p1.Offset {
		t.Fatalf("same key in another room: %+v %v", p3, err)
	}
	h := history(t, n.b, "r", hub.HistoryQuery{Limit: 10})
	if datas(h.Publications) != `"once" "between" ` {
		t.Fatalf("room holds %s", datas(h.Publications))
	}
}

// Room names are arbitrary UTF-8: each is one subject token, one to one.
func TestRoomNames(t *testing.T) {
	n := newNode(t, "", Options{})
	names := []string{"lobby", "a.b", "a b", "*", ">", "a_2E", "a.", "_", "ünï cødé 🙂", strings.Repeat("é", 128), "$JS.API"}
	seen := map[string]string{}
	for _, name := range names {
		tok := token(name)
		if back, err := untoken(tok); err != nil || back != name {
			t.Fatalf("%q -> %q -> %q %v", name, tok, back, err)
		}
		if prev, ok := seen[tok]; ok {
			t.Fatalf("%q and %q share token %q", prev, name, tok)
		}
		seen[tok] = name
		for _, c := range []byte(tok) {
			if !plain(c) && c != '_' {
				t.Fatalf("token %q of %q has %q", tok, name, c)
			}
		}
	}
	for i, name := range names {
		r := subscribe(t, n.b, name)
		publish(t, n.b, name, fmt.Sprint(i))
		r.wait(t, name, func(evs []hub.Event) bool { return len(pubs(evs)) == 1 })
		h := history(t, n.b, name, hub.HistoryQuery{Limit: 10})
		if len(h.Publications) != 1 || string(h.Publications[0].Data) != fmt.Sprint(i) || h.Publications[0].Room != name {
			t.Fatalf("room %q: %+v", name, h.Publications)
		}
	}
}

// Subscriptions are per room and end on Close; a closed broker refuses.
func TestSubscriptionClose(t *testing.T) {
	n := newNode(t, "", Options{})
	r1 := newRecorder()
	s1, _ := n.b.Subscribe(context.Background(), "r", r1.deliver)
	r2 := subscribe(t, n.b, "r")
	publish(t, n.b, "r", "1")
	r1.wait(t, "first", func(evs []hub.Event) bool { return len(evs) == 1 })
	s1.Close()
	publish(t, n.b, "r", "2")
	r2.wait(t, "second", func(evs []hub.Event) bool { return len(evs) == 2 })
	if len(r1.evs) != 1 {
		t.Fatalf("closed subscription got %d events", len(r1.evs))
	}
	n.b.mu.Lock()
	rooms := len(n.b.rooms)
	n.b.mu.Unlock()
	if rooms != 1 {
		t.Fatalf("%d live rooms", rooms)
	}
}

// The restart test: a file store outlives the server. History, positions
// and the epoch survive, and a position from before the restart recovers.
func TestRestartKeepsHistoryAndEpoch(t *testing.T) {
	dir := t.TempDir()
	n := newNode(t, dir, Options{})
	var ps []hub.Position
	for i := 0; i < 5; i++ {
		ps = append(ps, publish(t, n.b, "r", fmt.Sprint(i)))
	}
	before := history(t, n.b, "r", hub.HistoryQuery{Limit: 100})
	n.stop()

	n2 := newNode(t, dir, Options{})
	after := history(t, n2.b, "r", hub.HistoryQuery{Limit: 100})
	if after.Latest != before.Latest || datas(after.Publications) != datas(before.Publications) {
		t.Fatalf("after restart: %v %+v, before %v %+v", offsets(after.Publications), after.Latest, offsets(before.Publications), before.Latest)
	}
	p := publish(t, n2.b, "r", "5")
	if p.Epoch != ps[0].Epoch || p.Offset <= ps[4].Offset {
		t.Fatalf("position after restart %+v, before %+v", p, ps[4])
	}
	got := recoverable(t, n2.b, "r", ps[1], 4)
	if got[0].Offset != ps[2].Offset || got[3].Offset != p.Offset {
		t.Fatalf("recovered %v", offsets(got))
	}
}

// Ready follows the NATS connection: ready while connected, not while it is
// down, and never once closed.
func TestReadyFollowsConnection(t *testing.T) {
	n := newNode(t, "", Options{})
	ctx := context.Background()
	if err := n.b.Ready(ctx); err != nil {
		t.Fatalf("connected broker: %v", err)
	}
	n.nc.Close()
	if err := n.b.Ready(ctx); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("broker with its connection closed: %v, want ErrNotConnected", err)
	}
	n.b.Close()
	if err := n.b.Ready(ctx); err == nil {
		t.Fatal("closed broker says ready")
	}
}
