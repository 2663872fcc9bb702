//go:build linux

package websocket

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEventsIdleHoldsNothing: 1000 event-loop connections that have each
// echoed a message and wait for the next hold no goroutine (the process
// has the loop's pollers more than before, whatever the number of
// connections) and no buffer; once they close, the pollers end too.
func TestEventsIdleHoldsNothing(t *testing.T) {
	const n = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var conns []*Conn
	closed := make(chan struct{}, n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := AcceptEvents(w, r, nil, Events{
			OnMessage: func(c *Conn, msg Message) error { return c.Write(ctx, msg.Type, msg.Data) },
			OnClose:   func(*Conn, error) { closed <- struct{}{} },
		})
		if err == nil {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	before := runtime.NumGoroutine()
	clients := make([]*Conn, n)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	msg := []byte(strings.Repeat("x", 1000)) // makes the server take a pooled buffer
	for i := range clients {
		c, _, err := Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		if err := c.Write(ctx, MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// The clients read nothing now: they hold no goroutine either. What
	// is left of the handshakes' and the workers' goroutines ends soon, and
	// so does the serving of the last messages (a worker can still be
	// finishing one when the goroutines counted first say it is over).
	loop := len(pollers.list)
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != n {
		t.Fatalf("%d connections accepted; want %d", len(conns), n)
	}
	extra, busy := 0, ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		extra, busy = runtime.NumGoroutine()-before, ""
		for _, c := range conns {
			if busy = idleHolding(c); busy != "" {
				break
			}
		}
		if extra <= loop && busy == "" {
			break
		}
	}
	t.Logf("%d idle event-loop connections: %d goroutines more than before (the loop has %d pollers)", n, extra, loop)
	if extra > loop {
		t.Errorf("%d idle connections hold %d goroutines beyond the %d pollers'", n, extra-loop, loop)
	}
	if busy != "" {
		t.Fatalf("an idle connection: %s; want on the loop and holding nothing", busy)
	}

	for _, c := range clients {
		c.CloseNow()
	}
	for range n {
		select {
		case <-closed:
		case <-ctx.Done():
			t.Fatal("OnClose was not called for every connection")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if extra = runtime.NumGoroutine() - before; extra <= 0 {
			break
		}
	}
	if extra > 0 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left after the connections closed:\n%s", extra, buf[:runtime.Stack(buf, true)])
	}
	for _, p := range pollers.list {
		p.mu.Lock()
		left := len(p.conns)
		p.mu.Unlock()
		if left != 0 {
			t.Errorf("a poller still has %d connections", left)
		}
	}
}

// idleHolding describes what an event-loop connection holds that an idle
// one should not, or returns "" when it holds nothing.
func idleHolding(c *Conn) string {
	st := c.ev
	st.mu.Lock() // the last turn of serving ends under it
	defer st.mu.Unlock()
	if st.busy {
		return "being served" // its buffers are the worker's: not looked at
	}
	buf, big, partial := len(c.rb.buf), c.rb.big != nil, st.partial != nil
	if !st.onLoop.Load() || buf != 0 || big || partial {
		return fmt.Sprintf("on the loop %v, buffer of %d bytes (pooled: %v), partial message %v", st.onLoop.Load(), buf, big, partial)
	}
	return ""
}
