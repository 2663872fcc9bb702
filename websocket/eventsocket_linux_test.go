//go:build linux

package websocket

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEventSocketWaits: an event-loop connection's writes that find the
// socket's buffer full wait, on its own descriptor (eventSocket), for the
// peer to read (the poller's EPOLLOUT), for the write's context to end, or
// for the connection to close; and closing the connections leaves no
// descriptor behind.
func TestEventSocketWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	big := bytes.Repeat([]byte("x"), 8<<20) // more than both sockets' buffers hold
	type result struct {
		onSocket bool
		err      error
	}
	results := make(chan result, 3)
	conns := make(chan *Conn, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := AcceptEvents(w, r, nil, Events{OnMessage: func(c *Conn, msg Message) error {
			_, onSocket := c.t.(*eventSocket)
			wctx := ctx
			if string(msg.Data) == "deadline" {
				var cancel context.CancelFunc
				wctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
			}
			results <- result{onSocket, c.Write(wctx, MessageBinary, big)}
			return nil
		}})
		if err == nil {
			conns <- c
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	pickPoller() // the pollers' descriptors are the process's for good
	before := fds()
	dial := func(say string) (*Conn, *Conn) {
		c, _, err := Dial(ctx, url, &DialOptions{Options: Options{ReadLimit: -1}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, MessageText, []byte(say)); err != nil {
			t.Fatal(err)
		}
		return c, <-conns
	}
	wait := func(what string) result {
		select {
		case r := <-results:
			if !r.onSocket {
				t.Fatalf("%s: the connection is not on its own descriptor (eventSocket)", what)
			}
			return r
		case <-ctx.Done():
			t.Fatalf("%s: the write never returned", what)
		}
		return result{}
	}

	// The peer reads late: the write waits for room, then completes.
	c, _ := dial("late")
	time.Sleep(200 * time.Millisecond) // the write is waiting by now
	msg, err := c.Read(ctx)
	if err != nil || !bytes.Equal(msg.Data, big) {
		t.Fatalf("read %d bytes, %v; want the %d written", len(msg.Data), err, len(big))
	}
	if r := wait("a peer reading late"); r.err != nil {
		t.Errorf("a write waiting for a peer that reads late: %v", r.err)
	}
	c.CloseNow()

	// The peer never reads: the write's context ends it.
	c, _ = dial("deadline")
	if r := wait("a context ending"); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("a write whose context ends while it waits: %v, want context.DeadlineExceeded", r.err)
	}
	c.CloseNow()

	// The peer never reads: closing the connection ends the write.
	c, sc := dial("close")
	time.Sleep(200 * time.Millisecond)
	sc.CloseNow()
	if r := wait("closing"); !errors.Is(r.err, ErrClosed) {
		t.Errorf("a write waiting when the connection closes: %v, want ErrClosed", r.err)
	}
	c.CloseNow()

	deadline := time.Now().Add(5 * time.Second)
	for fds() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := fds(); n > before {
		t.Errorf("%d descriptors open after the connections closed, %d before", n, before)
	}
}

// TestEventsMessageReady: from OnMessage, MessageReady sees the messages
// the loop has buffered behind the one delivered, so that answers to
// messages that came together go out in one write (the loop holds the read
// side for good: MessageReady's own look would always find it taken).
func TestEventsMessageReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 16
	ready := make(chan bool, n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		AcceptEvents(w, r, nil, Events{OnMessage: func(c *Conn, msg Message) error {
			more := c.MessageReady()
			ready <- more
			if err := c.SendBinary(msg.Data); err != nil || more {
				return err
			}
			return c.Flush()
		}})
	}))
	defer srv.Close()
	c, _, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range n { // queued, then written at once
		if err := c.SendBinary([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		msg, err := c.Read(ctx)
		if err != nil || len(msg.Data) != 1 || msg.Data[0] != byte(i) {
			t.Fatalf("echo %d: %v, %v", i, msg.Data, err)
		}
	}
	var seen []bool
	for range n {
		seen = append(seen, <-ready)
	}
	if !slices.Contains(seen, true) {
		t.Errorf("MessageReady from OnMessage, 16 messages written at once: %v; want true while more were buffered", seen)
	}
	if seen[n-1] {
		t.Error("MessageReady true for the last message")
	}
}
