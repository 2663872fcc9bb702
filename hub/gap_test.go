package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// lossyBroker is a real memory broker whose live delivery loses some
// publications on the way, as a distributed broker's may (a node that
// reconnects, a subscription still propagating): history still has them.
type lossyBroker struct {
	*MemoryBroker
	mu   sync.Mutex
	drop func(p Publication) bool
}

func (b *lossyBroker) Subscribe(ctx context.Context, room string, deliver func(Event)) (Subscription, error) {
	return b.MemoryBroker.Subscribe(ctx, room, func(ev Event) {
		b.mu.Lock()
		lose := ev.Kind == EventPublication && b.drop(ev.Publication)
		b.mu.Unlock()
		if !lose {
			deliver(ev)
		}
	})
}

// A publication lost in live delivery is noticed from the next one's Prev
// and read from history: subscribers get every publication once, in order.
// When history cannot fill the gap, they are closed with 4010 instead of
// being silently short.
func TestGapInLiveDeliveryIsRepaired(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		mem := NewMemoryBroker(MemoryOptions{})
		lossy := &lossyBroker{MemoryBroker: mem, drop: func(p Publication) bool { return p.Offset%3 == 0 }}
		h, url := startHub(t, mode, Options{Broker: lossy, MaxRecover: 5})
		defer mem.Close()
		c := dialHub(t, url, `{}`)
		subscribeResultOf(t, c.call(map[string]any{"op": "subscribe", "room": "g"}))
		for i := 1; i <= 10; i++ {
			if _, err := h.Publish(context.Background(), "g", json.RawMessage(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		if !c.waitFor(5*time.Second, func(msgs []inMsg) bool { return len(pubsIn(msgs, "g")) >= 10 }) {
			t.Fatalf("got %d publications, want 10 (connection: %v, stats %+v)", len(c.pubs("g")), c.err, h.Stats())
		}
		for i, p := range c.pubs("g") {
			if p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprint(i+1) {
				t.Fatalf("publication %d: offset %d data %s", i, p.Offset, p.Data)
			}
		}
		if n := h.Stats().Repairs; n < 1 {
			t.Errorf("%d repairs for 3 lost publications", n)
		}

		// A client that does not read keeps its session, and so the room it
		// holds, alive for a while after the reset below.
		stalled := dialSmallBuffer(t, context.Background(), url, 4<<10)
		defer stalled.CloseNow()
		slowCall(t, context.Background(), stalled, `{"id":1,"op":"connect"}`)
		slowCall(t, context.Background(), stalled, `{"id":2,"op":"subscribe","room":"g"}`)

		// Now lose 6 in a row: more than MaxRecover, so the hub does not fill
		// that gap.
		lossy.mu.Lock()
		lossy.drop = func(p Publication) bool { return p.Offset > 10 && p.Offset <= 16 }
		lossy.mu.Unlock()
		for i := 11; i <= 17; i++ {
			h.Publish(context.Background(), "g", json.RawMessage(fmt.Sprint(i)))
		}
		if code, _ := c.closeCode(5 * time.Second); code != CloseInsufficientState {
			t.Fatalf("close code %d, want %d (insufficient state)", code, CloseInsufficientState)
		}
		// A newcomer right after the reset starts from the broker's position,
		// not from the one the reset room knew before its gap: the next
		// publication follows it directly.
		fresh := dialHub(t, url, `{}`)
		fr := subscribeResultOf(t, fresh.call(map[string]any{"op": "subscribe", "room": "g"}))
		if fr.Position.Offset != 17 {
			t.Fatalf("a subscriber after the reset starts at %+v, want offset 17 (the broker's latest)", fr.Position)
		}
		lossy.mu.Lock()
		lossy.drop = func(Publication) bool { return false }
		lossy.mu.Unlock()
		h.Publish(context.Background(), "g", json.RawMessage("18"))
		if !fresh.waitFor(5*time.Second, func(msgs []inMsg) bool { return len(pubsIn(msgs, "g")) == 1 }) || fresh.pubs("g")[0].Offset != 18 {
			t.Fatalf("the newcomer got %v after position 17, want offset 18", fresh.pubs("g"))
		}
		// What came before the close is a prefix of the room, without a gap;
		// the client recovers the rest from its last position.
		got := c.pubs("g")
		for i, p := range got {
			if p.Offset != uint64(i+1) {
				t.Fatalf("publication %d has offset %d: a gap before the close", i, p.Offset)
			}
		}
		last := Position{Offset: got[len(got)-1].Offset, Epoch: got[len(got)-1].Epoch}
		c2 := dialHub(t, url, `{}`)
		res := subscribeResultOf(t, c2.call(map[string]any{"op": "subscribe", "room": "g", "since": last}))
		if res.Recovered == nil || !*res.Recovered {
			t.Fatalf("recovery from %+v: recovered %v", last, res.Recovered)
		}
		// The reply holds what was missed up to its position; the rest, if the
		// hub had not delivered it yet, comes live.
		next := last.Offset + 1
		for _, p := range res.Publications {
			if p.Offset != next {
				t.Fatalf("recovered offset %d, want %d", p.Offset, next)
			}
			next++
		}
		if !c2.waitFor(5*time.Second, func(msgs []inMsg) bool { return int(next)+len(pubsIn(msgs, "g")) > 17 }) {
			t.Fatalf("after recovering up to %d, live publications stopped at %d", next-1, len(c2.pubs("g")))
		}
		for _, p := range c2.pubs("g") {
			if p.Offset != next {
				t.Fatalf("live offset %d, want %d", p.Offset, next)
			}
			next++
		}
		t.Logf("closed with 4010 after offset %d; on reconnect %d recovered, %d live; stats %+v", last.Offset, len(res.Publications), len(c2.pubs("g")), h.Stats())
	})
}
