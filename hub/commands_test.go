package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// heldBroker holds every Publish until release is closed, as a broker does
// during an election or a partition.
type heldBroker struct {
	Broker
	entered chan struct{}
	release chan struct{}
}

func (b *heldBroker) Publish(ctx context.Context, room string, m Message) (Position, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return Position{}, ctx.Err()
	}
	return b.Broker.Publish(ctx, room, m)
}

// TestConnectionReadWhileCommandWaits: while a publish waits on the broker,
// the session goes on reading, so the client's ping gets its pong (and the
// server's keepalive would see the client's); the commands sent meanwhile
// run after it, in order, and their replies come in order.
func TestConnectionReadWhileCommandWaits(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		b := &heldBroker{Broker: NewMemoryBroker(MemoryOptions{}), entered: make(chan struct{}, 8), release: make(chan struct{})}
		_, url := startHub(t, mode, Options{Broker: b})
		tc := dialHub(t, url, `{}`)

		first := tc.send(map[string]any{"op": "publish", "room": "r", "data": json.RawMessage(`0`)})
		select {
		case <-b.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the publish never reached the broker")
		}
		var ids []uint64
		for i := 1; i < 4; i++ {
			ids = append(ids, tc.send(map[string]any{"op": "publish", "room": "r", "data": json.RawMessage(fmt.Sprint(i))}))
		}

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := tc.c.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ping while a publish waits on the broker: %v", err)
		}
		select {
		case <-b.entered:
			t.Fatal("a second publish reached the broker before the first was answered")
		default:
		}

		close(b.release)
		ids = append([]uint64{first}, ids...)
		var order []uint64
		if !tc.waitFor(10*time.Second, func(msgs []inMsg) bool {
			order = order[:0]
			for _, m := range msgs {
				if m.ID != 0 {
					order = append(order, m.ID)
				}
			}
			return len(order) > len(ids) // connect's reply too
		}) {
			t.Fatalf("replies: %v", order)
		}
		if fmt.Sprint(order[1:]) != fmt.Sprint(ids) {
			t.Fatalf("replies in the order %v, commands sent in the order %v", order[1:], ids)
		}
		hist, err := b.History(t.Context(), "r", HistoryQuery{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var data []string
		for _, p := range hist.Publications {
			data = append(data, string(p.Data))
		}
		if fmt.Sprint(data) != "[0 1 2 3]" {
			t.Fatalf("stored in the order %v", data)
		}
	})
}
