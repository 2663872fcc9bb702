package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestPublishReachesEverySubscriberInOrder(t *testing.T) {
	h, url := startHub(t, Options{})
	a := dialHub(t, url, `{}`)
	b := dialHub(t, url, `{}`)
	for _, c := range []*testClient{a, b} {
		r := subscribeResultOf(t, c.call(map[string]any{"op": "subscribe", "room": "lobby"}))
		if r.Position.Offset != 0 || r.Position.Epoch == "" {
			t.Fatalf("empty room's position = %+v", r.Position)
		}
	}
	for i := 1; i <= 5; i++ {
		m := a.call(map[string]any{"op": "publish", "room": "lobby", "data": map[string]int{"n": i}})
		if m.Error != nil {
			t.Fatal(m.Error)
		}
	}
	if _, err := h.Publish(context.Background(), "lobby", json.RawMessage(`{"n":6}`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testClient{a, b} {
		if !c.waitFor(5*time.Second, func(msgs []inMsg) bool { return len(pubsIn(msgs, "lobby")) == 6 }) {
			t.Fatalf("got %d publications, want 6", len(c.pubs("lobby")))
		}
		for i, p := range c.pubs("lobby") {
			if p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
				t.Fatalf("publication %d = offset %d data %s", i, p.Offset, p.Data)
			}
			if i < 5 && (p.From == nil || p.From.Client != a.id) {
				t.Fatalf("publication %d from %+v, want client %s", i, p.From, a.id)
			}
			if i == 5 && p.From != nil {
				t.Fatalf("server publication has from %+v", p.From)
			}
		}
	}
}
