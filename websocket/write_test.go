package websocket

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// Writes over a socket go out without the poller and without a deadline
// when the socket takes them at once (writev.go); only a write that would
// wait arms the WriteTimeout. These tests hold a socket's buffers small, so
// that a large message must wait for its reader.

// smallBufferPair is pipePair with a small send buffer on the server's
// socket and its WriteTimeout set: a 1 MiB message cannot be written
// without waiting for the client to read.
func smallBufferPair(t *testing.T, writeTimeout time.Duration) (client, server *Conn) {
	cc, sc := tcpPair(t)
	if err := sc.SetWriteBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	client = newConn(connConfig{t: newSocketTransport(cc), client: true, opts: &Options{ReadLimit: -1}})
	server = newConn(connConfig{t: newSocketTransport(sc), opts: &Options{WriteTimeout: writeTimeout}})
	t.Cleanup(func() { client.CloseNow(); server.CloseNow() })
	return client, server
}

// TestWriteTimeoutWhenPeerStopsReading: a write that has to wait is bounded
// by the WriteTimeout although the writes before it armed no deadline.
func TestWriteTimeoutWhenPeerStopsReading(t *testing.T) {
	_, server := smallBufferPair(t, 100*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		p := make([]byte, 1<<20)
		for {
			if err := server.SendBinary(p); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !isTimeout(errors.Unwrap(err)) {
			t.Fatalf("the write failed with %v, want a timeout", err)
		}
	case <-time.After(ioTimeoutInternal):
		t.Fatal("a write to a peer that reads nothing never timed out")
	}
}

// TestWriteAfterDeadlinePassed: the deadline a waiting write armed stays on
// the socket after it; once it has passed, a later write that the socket
// takes at once must not fail on it.
func TestWriteAfterDeadlinePassed(t *testing.T) {
	const timeout = time.Second
	client, server := smallBufferPair(t, timeout)
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("b"), 1<<20)
	sent := make(chan error, 1)
	go func() { sent <- server.SendBinary(big) }()
	time.Sleep(100 * time.Millisecond) // the client reads nothing yet: the write waits, under a deadline
	msg, err := client.Read(ctx)
	if err != nil || !bytes.Equal(msg.Data, big) {
		t.Fatalf("the large message: %d bytes, %v", len(msg.Data), err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout + 200*time.Millisecond) // the armed deadline passes
	if err := server.SendText([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := server.Flush(); err != nil {
		t.Fatalf("a write after the last deadline passed failed: %v", err)
	}
	if msg, err := client.Read(ctx); err != nil || string(msg.Data) != "after" {
		t.Fatalf("got %q, %v; want %q", msg.Data, err, "after")
	}
}

// TestWriteContextEndsWaitingWrite: a Write whose context ends while it
// waits for the peer returns the context's error, over a socket as over
// the other transports.
func TestWriteContextEndsWaitingWrite(t *testing.T) {
	_, server := smallBufferPair(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- server.Write(ctx, MessageBinary, make([]byte, 4<<20)) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the write ended with %v, want %v", err, context.DeadlineExceeded)
		}
	case <-time.After(ioTimeoutInternal):
		t.Fatal("a write whose context ended kept waiting")
	}
}

// ioTimeoutInternal bounds a wait in these tests, against a hang: far
// above what any of them takes.
const ioTimeoutInternal = 10 * time.Second

// TestTryFlush: TryFlush writes what the socket takes and keeps the rest,
// in order, for a later flush; it never waits, not for a peer that stopped
// reading nor for a Flush that does.
func TestTryFlush(t *testing.T) {
	client, server := smallBufferPair(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1000) }

	// Queue and try until the socket is full; the client reads nothing.
	sent, full := 0, false
	for !full && sent < 10000 {
		for range 32 {
			if err := server.SendBinary(msg(sent)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		done, err := server.TryFlush()
		if err != nil {
			t.Fatal(err)
		}
		full = !done
	}
	if !full {
		t.Fatalf("%d messages of 1000 bytes all written at once to a peer that reads nothing", sent)
	}

	// A write that waits for the client holds the connection; TryFlush
	// meanwhile does not wait for it.
	big := bytes.Repeat([]byte{'b'}, 4<<20)
	written := make(chan error, 1)
	go func() { written <- server.Write(ctx, MessageBinary, big) }()
	time.Sleep(50 * time.Millisecond) // the write is waiting by now
	tried := make(chan bool, 1)
	go func() { done, _ := server.TryFlush(); tried <- done }()
	select {
	case done := <-tried:
		if done {
			t.Error("TryFlush reported everything written while a 4 MiB write waits for the peer")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("TryFlush waited for a write under way")
	}

	// Everything arrives, once and in order, once the client reads.
	for i := range sent {
		m, err := client.Read(ctx)
		if err != nil || !bytes.Equal(m.Data, msg(i)) {
			t.Fatalf("message %d of %d: %d bytes starting %v, %v", i, sent, len(m.Data), m.Data[:min(len(m.Data), 1)], err)
		}
	}
	if m, err := client.Read(ctx); err != nil || !bytes.Equal(m.Data, big) {
		t.Fatalf("the 4 MiB message: %d bytes, %v", len(m.Data), err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if done, err := server.TryFlush(); !done || err != nil {
		t.Errorf("TryFlush with nothing queued: %v, %v", done, err)
	}
}

// TestTrySendPrepared: TrySendPrepared queues a small prepared message and
// never waits or writes: it refuses, queuing nothing, a frame SendPrepared
// would write at once, one that would take the queue past 64 KiB, and any
// while another write holds the connection. What it accepted arrives once,
// in order, from a server and from a client (which masks it).
func TestTrySendPrepared(t *testing.T) {
	client, server := smallBufferPair(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	small := func(i int) *PreparedMessage {
		return NewPreparedMessage(MessageBinary, bytes.Repeat([]byte{byte(i)}, 1000))
	}
	try := func(c *Conn, pm *PreparedMessage) bool {
		t.Helper()
		ok, err := c.TrySendPrepared(pm)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	if try(server, NewPreparedMessage(MessageBinary, make([]byte, 4<<10))) {
		t.Error("TrySendPrepared took a 4 KiB frame, which SendPrepared writes at once")
	}
	server.wmu.Lock() // as a control frame's write does, without a message's turn
	if try(server, small(0)) {
		t.Error("TrySendPrepared queued a message while a control frame's write holds the connection")
	}
	server.wmu.Unlock()

	var want [][]byte
	for i := 0; ; i++ { // the queue takes small frames up to 64 KiB, no more
		pm := small(i)
		if !try(server, pm) {
			break
		}
		want = append(want, pm.data())
		if i > 100 {
			t.Fatal("TrySendPrepared queued more than 100 KiB without a write")
		}
	}
	if len(want) < 60 {
		t.Fatalf("TrySendPrepared refused after %d messages of 1000 bytes, want about 64 KiB's worth", len(want))
	}
	if done, err := server.TryFlush(); !done || err != nil {
		t.Fatalf("TryFlush of 64 KiB: %v, %v", done, err)
	}

	// A write that waits for the client holds the connection: refused, at once.
	big := bytes.Repeat([]byte{'b'}, 4<<20)
	written := make(chan error, 1)
	go func() { written <- server.Write(ctx, MessageBinary, big) }()
	time.Sleep(50 * time.Millisecond) // the write is waiting by now
	tried := make(chan bool, 1)
	go func() { ok, _ := server.TrySendPrepared(small(0)); tried <- ok }()
	select {
	case ok := <-tried:
		if ok {
			t.Error("TrySendPrepared queued a message while a 4 MiB write holds the connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("TrySendPrepared waited for a write under way")
	}

	for i, w := range want {
		m, err := client.Read(ctx)
		if err != nil || !bytes.Equal(m.Data, w) {
			t.Fatalf("message %d of %d: %d bytes, %v", i, len(want), len(m.Data), err)
		}
	}
	if m, err := client.Read(ctx); err != nil || !bytes.Equal(m.Data, big) {
		t.Fatalf("the 4 MiB message: %d bytes, %v (a refused message arrived?)", len(m.Data), err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}

	pm := small(7) // a client masks what it sends
	if !try(client, pm) {
		t.Fatal("the client's TrySendPrepared refused a small message on an idle connection")
	}
	if err := client.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := server.Read(ctx); err != nil || !bytes.Equal(m.Data, pm.data()) {
		t.Fatalf("the client's message: %d bytes, %v", len(m.Data), err)
	}
}
