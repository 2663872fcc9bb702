package hub

import (
	"context"
	"encoding/json"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

// An idle hub connection holds no goroutine of the hub's own: the writer of
// a connection's queue exists only while the queue has something.
func TestIdleConnectionHoldsNoWriter(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		const n = 50
		h, url := startHub(t, mode, Options{})
		clients := make([]*testClient, n)
		for i := range clients {
			clients[i] = dialHub(t, url, `{}`)
			subscribeResultOf(t, clients[i].call(map[string]any{"op": "subscribe", "room": "idle"}))
		}
		for range 10 {
			h.Publish(context.Background(), "idle", json.RawMessage(`{}`))
		}
		for _, c := range clients {
			if !c.waitFor(5*time.Second, func(msgs []inMsg) bool { return len(pubsIn(msgs, "idle")) == 10 }) {
				t.Fatal("publications not delivered")
			}
		}
		writers := -1
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			buf := make([]byte, 4<<20)
			stacks := string(buf[:runtime.Stack(buf, true)])
			// The session's writer (write, writeFrom), and a fan-out's
			// group writer (writers.go) while it writes to this one.
			if writers = strings.Count(stacks, "hub.(*session).write") + strings.Count(stacks, "hub.writeGroup("); writers == 0 {
				break
			}
		}
		t.Logf("%d idle subscribed connections: %d queue writer goroutines", n, writers)
		if writers != 0 {
			t.Fatalf("%d writer goroutines left for %d idle connections, want 0", writers, n)
		}
	})
}

// TestFanOutStartsAGoroutinePerGroup: a publication to subscribers whose
// queues are empty starts one goroutine per writerChunk of them, not one per
// subscriber (writers.go), and every subscriber still gets every
// publication, in order.
func TestFanOutStartsAGoroutinePerGroup(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		const subscribers, publications = 4 * writerChunk, 20
		h, url := startHub(t, mode, Options{})
		clients := make([]*testClient, subscribers)
		for i := range clients {
			clients[i] = dialHub(t, url, `{}`)
			subscribeResultOf(t, clients[i].call(map[string]any{"op": "subscribe", "room": "fan"}))
		}
		created := func() uint64 {
			s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
			metrics.Read(s)
			if s[0].Value.Kind() != metrics.KindUint64 {
				t.Skip("no /sched/goroutines-created metric")
			}
			return s[0].Value.Uint64()
		}
		before := created()
		for i := range publications { // one in flight: every queue is empty when the next comes
			if _, err := h.Publish(context.Background(), "fan", json.RawMessage(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
			for _, c := range clients {
				if !c.waitFor(5*time.Second, func(msgs []inMsg) bool { return len(pubsIn(msgs, "fan")) == i+1 }) {
					t.Fatalf("publication %d not delivered", i)
				}
			}
		}
		n := created() - before
		t.Logf("%d publications to %d subscribers started %d goroutines", publications, subscribers, n)
		if limit := uint64(publications * (subscribers/writerChunk + 8)); n > limit {
			t.Errorf("%d publications to %d idle subscribers started %d goroutines, want at most %d (a few per group of %d)", publications, subscribers, n, limit, writerChunk)
		}
		for _, c := range clients {
			for i, m := range c.pubs("fan") {
				if string(m.Data) != strconv.Itoa(i) {
					t.Fatalf("publication %d arrived as %s", i, m.Data)
				}
			}
		}
	})
}
