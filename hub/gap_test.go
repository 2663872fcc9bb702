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
	mem := NewMemoryBroker(MemoryOptions{})
	lossy := &lossyBroker{MemoryBroker: mem, drop: func(p Publication) bool { return p.Offset%3 == 0 }}
	h, url := startHub(t, Options{Broker: lossy, MaxRecover: 5})
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
	if res.Recovered == nil || !*res.Recovered || len(res.Publications) != int(17-last.Offset) || res.Position.Offset != 17 {
		t.Fatalf("recovery from %+v: recovered %v, %d publications, position %+v; want the %d after it", last, res.Recovered, len(res.Publications), res.Position, 17-last.Offset)
	}
	t.Logf("closed with 4010 after offset %d; recovered %d on reconnect; stats %+v", last.Offset, len(res.Publications), h.Stats())
}
