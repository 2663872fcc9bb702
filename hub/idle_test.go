package hub

import (
	"context"
	"encoding/json"
	"runtime"
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
			if writers = strings.Count(stacks, "hub.(*session).write("); writers == 0 {
				break
			}
		}
		t.Logf("%d idle subscribed connections: %d queue writer goroutines", n, writers)
		if writers != 0 {
			t.Fatalf("%d writer goroutines left for %d idle connections, want 0", writers, n)
		}
	})
}
