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

// subscribers opens n connections to a server that makes each a subscriber;
// it returns the subscribers and the clients, in the same order.
func subscribers(t *testing.T, ctx context.Context, n int) ([]*subscriber, []*websocket.Conn) {
	t.Helper()
	subs := make(chan *subscriber)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			s := newSubscriber(c)
			defer s.leave()
			subs <- s
			_, err := c.Read(ctx) // until the client closes
			return err
		})
	}))
	t.Cleanup(srv.Close)
	var ss []*subscriber
	var cs []*websocket.Conn
	for range n {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.CloseNow() })
		ss, cs = append(ss, <-subs), append(cs, c)
	}
	return ss, cs
}

// Publishers sending at once to one subscriber, in batches of different
// sizes, go through both paths (the publisher's own batch, and the queue
// the writer goroutine drains while another write is under way): the
// subscriber gets every message, each publisher's in order.
func TestSubscriberConcurrentPublishers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ss, cs := subscribers(t, ctx, 1)
	s, c := ss[0], cs[0]

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
}

// A flush stopped by a message that arrived meanwhile keeps the subscribers
// it has not flushed yet; the next message joins them, and the next flush
// writes both to every subscriber, in order.
func TestBatchFlushUnless(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = minFlushes + 40
	ss, cs := subscribers(t, ctx, n)
	var b batch
	sendAll := func(text string) {
		pm := websocket.NewPreparedMessage(websocket.MessageText, []byte(text))
		for _, s := range ss {
			s.send(pm, &b)
		}
	}
	sendAll("first")
	b.flushUnless(func() bool { return true }) // a message arrived: stop after minFlushes
	if len(b.pending) != n-minFlushes || b.pending[0] != ss[minFlushes] {
		t.Fatalf("%d pending after a stopped flush, want the last %d", len(b.pending), n-minFlushes)
	}
	sendAll("second")
	if len(b.pending) != n {
		t.Fatalf("%d pending after the second message, want all %d", len(b.pending), n)
	}
	b.flushUnless(func() bool { return false })
	if len(b.pending) != 0 {
		t.Fatalf("%d pending after a whole flush", len(b.pending))
	}
	for i, c := range cs {
		for _, want := range []string{"first", "second"} {
			msg, err := c.Read(ctx)
			if err != nil || string(msg.Data) != want {
				t.Fatalf("subscriber %d: %q, %v; want %q", i, msg.Data, err, want)
			}
		}
	}
}
