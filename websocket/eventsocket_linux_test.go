//go:build linux

package websocket

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// TestEventsLargeMessageOneRead: once a large message has come, the event
// loop reads the next one whole in one read, as a reading goroutine does
// (readBuffer.wantLarge), rather than a 32 KiB read, a second for the rest
// and a third that finds the socket empty. The reads are the process's
// (/proc/self/io), less the client's own: it uses a blocking socket and
// plain read(2), so each of its reads is one call.
func TestEventsLargeMessageOneRead(t *testing.T) {
	const size, warmup, n = 64 << 10, 2, 32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		AcceptEvents(w, r, nil, Events{OnMessage: func(c *Conn, msg Message) error {
			if err := c.SendBinary(msg.Data); err != nil {
				return err
			}
			return c.Flush()
		}})
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().(*net.TCPAddr)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: addr.Port, Addr: [4]byte(addr.IP.To4())}); err != nil {
		t.Fatal(err)
	}
	tv := syscall.Timeval{Sec: 10}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	writeAll := func(p []byte) {
		for len(p) > 0 {
			k, err := syscall.Write(fd, p)
			if err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
	}
	clientReads := 0
	buf := make([]byte, 256<<10)
	readUntil := func(have []byte, done func([]byte) bool) []byte {
		for !done(have) {
			k, err := syscall.Read(fd, buf)
			clientReads++
			if err != nil || k == 0 {
				t.Fatalf("client read: %d, %v", k, err)
			}
			have = append(have, buf[:k]...)
		}
		return have
	}
	writeAll([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	resp := readUntil(nil, func(b []byte) bool { return bytes.Contains(b, []byte("\r\n\r\n")) })
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101")) || !bytes.HasSuffix(resp, []byte("\r\n\r\n")) {
		t.Fatalf("handshake answer: %q", resp)
	}

	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	frame := binary.BigEndian.AppendUint64([]byte{0x82, 0xff}, size) // FIN, binary; masked, 64-bit length
	frame = append(append(frame, 1, 2, 3, 4), payload...)
	for i := range payload {
		frame[14+i] ^= [4]byte{1, 2, 3, 4}[i%4]
	}
	echo := func() {
		writeAll(frame)
		got := readUntil(nil, func(b []byte) bool { return len(b) >= 10+size })
		if len(got) != 10+size || !bytes.Equal(got[10:], payload) {
			t.Fatalf("echo: %d bytes, want %d, the payload", len(got), 10+size)
		}
	}
	for range warmup {
		echo()
	}
	reads0, clientReads0 := processReads(t), clientReads
	for range n {
		echo()
	}
	server := processReads(t) - reads0 - (clientReads - clientReads0)
	// One read per message; some more for the runtime's own (its poller's
	// wake-ups read an eventfd), up to 39 for 32 messages seen under load.
	// Before, each message took three (98 for 32).
	if server > n*3/2 {
		t.Errorf("the event loop made %d reads for %d messages of %d bytes, want about one each", server, n, size)
	}
	t.Logf("%d server reads for %d messages", server, n)
}

// processReads is this process's read system calls so far (syscr).
func processReads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			k, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}
