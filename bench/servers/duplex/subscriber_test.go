package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// Publishers sending at once to one subscriber, in batches of different
// sizes, go through both paths (the publisher's own batch, and the queue
// the writer goroutine drains while another write is under way): the
// subscriber gets every message, each publisher's in order.
func TestSubscriberConcurrentPublishers(t *testing.T) {
	subs := make(chan *subscriber, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			s := newSubscriber(c)
			defer s.leave()
			subs <- s
			_, err := c.Read(ctx) // until the client closes
			return err
		})
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	s := <-subs

	const publishers, each = 4, 50 // under maxQueued in all: no publisher can make it overflow
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			var b batch
			for i := range each {
				s.send(websocket.NewPreparedMessage(websocket.MessageText, fmt.Appendf(nil, "%d %d", p, i)), &b)
				if i%(p+1) == 0 { // batches of 1 to 4 messages
					b.flush()
				}
			}
			b.flush()
		})
	}
	next := make([]int, publishers)
	for range publishers * each {
		msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", next, err)
		}
		var p, i int
		if _, err := fmt.Sscanf(string(msg.Data), "%d %d", &p, &i); err != nil || p >= publishers || i != next[p] {
			t.Fatalf("got %q, want publisher %d's message %d (%v)", msg.Data, p, next[min(p, publishers-1)], err)
		}
		next[p]++
	}
	wg.Wait()
	_ = c.Close(websocket.StatusNormalClosure, "")
}
