package hub

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestObservationOptions: ObservePublish sees every publish (a client's and
// the server's), Hooks see the hub's handshakes and connection ends, and
// Stats counts the connections' messages.
func TestObservationOptions(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		type published struct {
			room string
			took time.Duration
			err  error
		}
		var mu sync.Mutex
		var pubs []published
		var handshakes, ends int
		ended := make(chan websocket.EndInfo, 2)
		h, url := startHub(t, mode, Options{
			ObservePublish: func(room string, took time.Duration, err error) {
				mu.Lock()
				pubs = append(pubs, published{room, took, err})
				mu.Unlock()
			},
			Hooks: websocket.ServerHooks{
				Handshake: func(i websocket.HandshakeInfo) {
					if i.Err == nil {
						mu.Lock()
						handshakes++
						mu.Unlock()
					}
				},
				End: func(e websocket.EndInfo) {
					mu.Lock()
					ends++
					mu.Unlock()
					ended <- e
				},
			},
		})
		a := dialHub(t, url, `{}`)
		b := dialHub(t, url, `{}`)
		subscribeResultOf(t, a.call(map[string]any{"op": "subscribe", "room": "r"}))
		subscribeResultOf(t, b.call(map[string]any{"op": "subscribe", "room": "r"}))
		if m := a.call(map[string]any{"op": "publish", "room": "r", "data": json.RawMessage(`"from a"`)}); m.Error != nil {
			t.Fatal(m.Error)
		}
		if _, err := h.Publish(context.Background(), "r", json.RawMessage(`"from the server"`)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*testClient{a, b} {
			if !c.waitFor(10*time.Second, func(msgs []inMsg) bool { return len(pubsIn(msgs, "r")) == 2 }) {
				t.Fatal("publications not delivered")
			}
		}
		st := h.Stats()
		if st.Rooms != 1 || st.Subscriptions != 2 || st.Publications != 2 || st.WebSocket.Open != 2 {
			t.Errorf("Stats = %+v, want 1 room, 2 subscriptions, 2 publications, 2 connections open", st)
		}
		// a sent connect, subscribe, publish; b connect and subscribe. a got
		// three replies and two publications, b two replies and two.
		if st.WebSocket.MessagesIn != 5 || st.WebSocket.MessagesOut != 9 {
			t.Errorf("WebSocket messages in %d, out %d; want 5 and 9", st.WebSocket.MessagesIn, st.WebSocket.MessagesOut)
		}
		mu.Lock()
		if len(pubs) != 2 || pubs[0].room != "r" || pubs[0].err != nil || pubs[1].err != nil || pubs[0].took <= 0 {
			t.Errorf("ObservePublish saw %+v, want two successful publishes to r", pubs)
		}
		mu.Unlock()

		for _, c := range []*testClient{a, b} {
			c.c.Close(websocket.StatusNormalClosure, "")
			<-c.done
		}
		for range 2 {
			if e := <-ended; e.Stats.CloseReceived != websocket.StatusNormalClosure || e.Stats.ClosedBy != websocket.ClosedByPeer {
				t.Errorf("end: %+v, want a normal close by the client", e.Stats)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if handshakes != 2 || ends != 2 {
			t.Errorf("hooks saw %d handshakes and %d ends, want 2 and 2", handshakes, ends)
		}
		if st := h.Stats(); st.WebSocket.Open != 0 || st.WebSocket.Ended != 2 || st.Rooms != 0 || st.Subscriptions != 0 {
			t.Errorf("Stats after the clients left = %+v", st)
		}
	})
}

// TestStatsQueueDepth: publications waiting for a client that does not read
// show in QueuedBytes and QueuedMessages, never beyond the queue's bound,
// and leave them when the client is closed as a slow consumer: the totals
// go back to zero.
func TestStatsQueueDepth(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		const queueBytes = 64 << 10
		h, url := startHubSendBuffer(t, mode, Options{QueueBytes: queueBytes}, 16<<10) // the queue fills soon
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		slow := dialSmallBuffer(t, ctx, url, 8<<10)
		defer slow.CloseNow()
		slowCall(t, ctx, slow, `{"id":1,"op":"connect"}`)
		slowCall(t, ctx, slow, `{"id":2,"op":"subscribe","room":"q"}`)

		most, mostMsgs := publishUntilSlowConsumer(t, ctx, h, "q", 10000, func(st Stats) {
			if st.QueuedBytes > queueBytes {
				t.Fatalf("QueuedBytes = %d, over the bound of %d", st.QueuedBytes, queueBytes)
			}
		})
		if most == 0 || mostMsgs == 0 {
			t.Errorf("the queue of a client that does not read never showed: %d bytes, %d messages", most, mostMsgs)
		}
		t.Logf("most queued: %d bytes in %d messages (bound %d bytes)", most, mostMsgs, queueBytes)

		// The client reads again, down to the close: the batch that was being
		// written goes out, and nothing is left counted.
		for {
			_, err := slow.Read(ctx)
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if ce.Code != CloseSlowConsumer {
					t.Errorf("closed with %v, want %d", ce, CloseSlowConsumer)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for st := h.Stats(); st.QueuedBytes != 0 || st.QueuedMessages != 0; st = h.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("after the slow consumer's close: %d bytes and %d messages still counted as queued", st.QueuedBytes, st.QueuedMessages)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// notReady is a broker whose Ready fails.
type notReady struct{ *MemoryBroker }

func (notReady) Ready(context.Context) error { return errors.New("connection lost") }

// TestReady: a hub is ready until Shutdown, and not while its broker says it
// is not.
func TestReady(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		ctx := context.Background()
		h, _ := startHub(t, mode, Options{})
		if err := h.Ready(ctx); err != nil {
			t.Errorf("Ready before Shutdown: %v", err)
		}
		h.Shutdown(ctx)
		if err := h.Ready(ctx); err == nil {
			t.Error("Ready after Shutdown: nil, want an error")
		}

		b := NewMemoryBroker(MemoryOptions{})
		defer b.Close()
		h2, _ := startHub(t, mode, Options{Broker: notReady{b}})
		if err := h2.Ready(ctx); err == nil || !strings.Contains(err.Error(), "connection lost") {
			t.Errorf("Ready with a broker that is not: %v, want its error", err)
		}
	})
}

// publishUntilSlowConsumer publishes into room, for a subscriber that does
// not read, until the hub closes a slow consumer, at most n times; it
// passes the hub's Stats after each publication to check, and returns the
// most bytes and messages it saw queued.
func publishUntilSlowConsumer(t *testing.T, ctx context.Context, h *Hub, room string, n int, check func(Stats)) (mostBytes, mostMsgs int) {
	t.Helper()
	// Random letters, so that compression does not shrink them.
	rnd := make([]byte, 768)
	crand.Read(rnd)
	data := json.RawMessage(fmt.Sprintf("%q", base64.StdEncoding.EncodeToString(rnd)))
	for i := 0; h.Stats().SlowConsumers == 0; i++ {
		if i >= n {
			t.Fatalf("no slow consumer after %d publications", n)
		}
		if _, err := h.Publish(ctx, room, data); err != nil {
			t.Fatal(err)
		}
		// Fan-out runs after Publish returns. Unpaced, it can take a burst
		// of publications at once and overflow the queue between two looks
		// at it; give each publication a moment to reach the queue, so that
		// a queue that holds something is seen holding it.
		st := h.Stats()
		for wait := time.Now().Add(20 * time.Millisecond); st.QueuedMessages == 0 && st.SlowConsumers == 0 && time.Now().Before(wait); st = h.Stats() {
			time.Sleep(100 * time.Microsecond)
		}
		if check != nil {
			check(st)
		}
		mostBytes, mostMsgs = max(mostBytes, st.QueuedBytes), max(mostMsgs, st.QueuedMessages)
	}
	return mostBytes, mostMsgs
}
