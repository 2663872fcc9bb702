//go:build linux

package websocket_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// idleServe is how a server under measurement serves its connections.
type idleServe string

const (
	serveOpen   idleServe = "open"   // Open, the handler reading in net/http's goroutine
	serveAccept idleServe = "accept" // Accept, then a goroutine of its own reading
	serveLoop   idleServe = "events" // AcceptEvents: the event loop, no goroutine per connection
	serveTCP    idleServe = "tcp"    // no WebSocket: a goroutine per accepted socket reading it (the floor)
)

// idleCost is what n idle connections add to the server's process, per
// connection: live heap, goroutine stacks, and goroutines.
type idleCost struct {
	heap, stack, goroutines float64
}

func (c idleCost) String() string {
	return fmt.Sprintf("heap %5.0f B, stack %5.0f B, heap+stack %5.0f B, %.2f goroutines", c.heap, c.stack, c.heap+c.stack, c.goroutines)
}

// measureIdleServer opens n idle connections to a real server on loopback
// that serves them as how says, and returns what they cost it. The clients
// are raw sockets made with syscalls, so they add nothing to the Go heap or
// stacks: every byte measured is the server's. With profile set, the heap
// profile (every allocation sampled) of the idle connections is written
// there.
func measureIdleServer(t *testing.T, how idleServe, n int, profile string) idleCost {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var parked atomic.Int64 // server goroutines that reached their read loop
	echo := func(ctx context.Context, c *websocket.Conn) error {
		parked.Add(1)
		for {
			msg, err := c.Read(ctx)
			if err != nil {
				return err
			}
			if err := c.SendBinary(msg.Data); err != nil {
				return err
			}
			if err := c.Flush(); err != nil {
				return err
			}
		}
	}
	opts := &websocket.AcceptOptions{Options: websocket.Options{Compression: &websocket.CompressionOptions{Disabled: true}}}
	var srv *http.Server
	switch how {
	case serveOpen:
		srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = websocket.Open(w, r, opts, echo)
		})}
	case serveAccept:
		srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				return
			}
			go func() {
				err := echo(context.Background(), c)
				if errors.Is(err, io.EOF) {
					_ = c.Close(websocket.StatusNormalClosure, "")
				}
				_ = c.CloseNow()
			}()
		})}
	case serveLoop:
		srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := websocket.AcceptEvents(w, r, opts, websocket.Events{OnMessage: func(c *websocket.Conn, msg websocket.Message) error {
				if err := c.SendBinary(msg.Data); err != nil {
					return err
				}
				return c.Flush()
			}})
			if err == nil {
				parked.Add(1) // on the loop from here on
			}
		})}
	case serveTCP:
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					parked.Add(1)
					var b [1]byte
					for {
						if _, err := c.Read(b[:]); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	if srv != nil {
		go srv.Serve(ln)
	}
	t.Cleanup(func() {
		ln.Close()
		if srv != nil {
			srv.Close()
		}
	})

	var clients []int
	t.Cleanup(func() {
		for _, fd := range clients {
			syscall.Close(fd)
		}
	})
	addr := ln.Addr().(*net.TCPAddr)
	connect := func() {
		fd, err := rawConnect(addr, how != serveTCP)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, fd)
	}
	// Warm up: the first connections make the server's long-lived
	// goroutines and pools, and bring the runtime's starting stack size
	// (the average of the stacks in use, which a test process's few deep
	// goroutines raise) to what the server's goroutines need.
	for range idleWarmup {
		connect()
	}
	waitParked := func(want int64) {
		if !pollUntil(30*time.Second, func() bool { return parked.Load() >= want }) {
			t.Fatalf("%d of %d connections reached the read loop", parked.Load(), want)
		}
		// The handshakes' goroutines end after the serving ones started.
		time.Sleep(100 * time.Millisecond)
	}
	waitParked(idleWarmup)

	if profile != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	before := idleSnapshot()
	rss0 := rssBytes()
	for range n {
		connect()
	}
	waitParked(int64(idleWarmup + n))
	time.Sleep(2 * time.Second)
	rss := float64(rssBytes()-rss0) / float64(n)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("rss %.0f B per connection; allocated %.0f B per connection; before the collection: heap in use %d, stack %d, GCs %d, goal %d",
		rss, float64(ms.TotalAlloc-before.allocated)/float64(n), ms.HeapInuse, ms.StackInuse, ms.NumGC, ms.NextGC)
	after := idleSnapshot()
	t.Logf("stack scanned per goroutine %.0f B (before %.0f B), starting size %d",
		float64(after.scanned)/float64(after.goroutines), float64(before.scanned)/float64(before.goroutines), after.starting)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
	}
	return idleCost{
		heap:       float64(after.heap-before.heap) / float64(n),
		stack:      float64(after.stack-before.stack) / float64(n),
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
	}
}

type memSnapshot struct {
	heap, stack, goroutines, scanned, starting int64
	allocated                                  uint64
}

// idleSnapshot collects twice, which also shrinks the stacks of parked
// goroutines that use less than a quarter of theirs, and reads the live heap
// and the stacks in use.
func idleSnapshot() memSnapshot {
	runtime.GC()
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	ms := []metrics.Sample{{Name: "/gc/scan/stack:bytes"}, {Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(ms)
	return memSnapshot{heap: int64(m.HeapAlloc), stack: int64(m.StackInuse), goroutines: int64(runtime.NumGoroutine()),
		scanned: int64(ms[0].Value.Uint64()), starting: int64(ms[1].Value.Uint64()), allocated: m.TotalAlloc}
}

// rawConnect connects a blocking socket made with syscalls (no Go heap, no
// goroutine) to addr and, with handshake, makes it a WebSocket client.
func rawConnect(addr *net.TCPAddr, handshake bool) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if !handshake {
		return fd, nil
	}
	req := "GET / HTTP/1.1\r\nHost: " + addr.String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := syscall.Write(fd, []byte(req)); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	var resp []byte
	buf := make([]byte, 512)
	for !strings.Contains(string(resp), "\r\n\r\n") {
		n, err := syscall.Read(fd, buf)
		if err != nil || n <= 0 {
			syscall.Close(fd)
			return -1, fmt.Errorf("reading the handshake response: %v (%d bytes)", err, n)
		}
		resp = append(resp, buf[:n]...)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.1 101 ") {
		syscall.Close(fd)
		return -1, fmt.Errorf("handshake refused: %q", resp)
	}
	return fd, nil
}

// TestIdleConnectionCostBreakdown prints what an idle connection costs the
// server for Open, Accept + goroutine and the plain TCP floor, and with
// DUPLEX_MEMPROFILE=dir writes each one's heap profile there.
func TestIdleConnectionCostBreakdown(t *testing.T) {
	if os.Getenv("DUPLEX_LONG") == "" {
		t.Skip("a measurement: set DUPLEX_LONG=1")
	}
	dir := os.Getenv("DUPLEX_MEMPROFILE")
	for _, how := range []idleServe{serveTCP, serveAccept, serveLoop, serveOpen} {
		profile := ""
		if dir != "" {
			profile = dir + "/idle-" + string(how) + ".pprof"
		}
		// Not in subtests: the connections of one stay open while the next
		// is measured, so that each makes goroutines of its own rather
		// than reuse the ones the last left (a goroutine's descriptor, some
		// 400 bytes, is never freed).
		t.Logf("%-6s %v", how, measureIdleServer(t, how, idleBreakdownConns, profile))
	}
}

const (
	idleBreakdownConns = 2000
	idleWarmup         = 200 // connections opened before measuring
)

func rssBytes() int64 {
	b, _ := os.ReadFile("/proc/self/statm")
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}

// TestIdleConnectionCost keeps what an idle connection costs its server at
// what it was brought down to, with a little room, so that a cost taken out
// that comes back fails it. Over 1000 real connections, Accept + goroutine:
// the smallest stack (2 KiB: the read path parks shallow enough), and a heap
// (1.2 KiB now, a goroutine's descriptor and net's fd included) without the
// close signals' channels, ping and keepalive state made up front, without
// channels for the read and message semaphores, and with a Conn in the 384
// B size class (704 B before, then 512 B). AcceptEvents: the same Conn, no
// goroutine and no stack (0.63 KiB now). Open: no more than net/http's request and connection on top of
// Accept's (2.5 KiB now), without the 8 KiB of bufio buffers that Hijack
// handed over.
func TestIdleConnectionCost(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 3600 connections")
	}
	const n = 1000
	accept := measureIdleServer(t, serveAccept, n, "")
	loop := measureIdleServer(t, serveLoop, n, "")
	open := measureIdleServer(t, serveOpen, n, "")
	t.Logf("accept: %v", accept)
	t.Logf("events: %v", loop)
	t.Logf("open:   %v", open)
	if accept.heap > 1350 {
		t.Errorf("Accept: %.0f heap bytes per idle connection, want at most 1350", accept.heap)
	}
	if loop.heap > 750 {
		t.Errorf("AcceptEvents: %.0f heap bytes per idle connection, want at most 750", loop.heap)
	}
	if loop.goroutines > 0.01 {
		t.Errorf("AcceptEvents: %.2f goroutines per idle connection, want none", loop.goroutines)
	}
	if !websocket.RaceEnabled && accept.stack > 2560 {
		t.Errorf("Accept: %.0f stack bytes per idle connection, want 2048 (the smallest stack)", accept.stack)
	}
	if open.heap > accept.heap+3072 {
		t.Errorf("Open: %.0f heap bytes per idle connection, want at most Accept's %.0f + 3072", open.heap, accept.heap)
	}
}

// TestAcceptReleasesHijackedBuffers checks that Accept empties the
// bufio.Reader and Writer Hijack hands over: they are net/http's 4 KiB
// buffers, which Open's handler would otherwise keep for the connection's
// life.
func TestAcceptReleasesHijackedBuffers(t *testing.T) {
	var handedOver *bufio.ReadWriter
	accepted := make(chan *websocket.Conn, 1)
	_, url := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(hijackRecorder{w, &handedOver}, r, nil)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}))
	ctx := testCtx(t)
	client, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	server := <-accepted
	defer server.CloseNow()
	if n := handedOver.Reader.Size(); n != 0 {
		t.Errorf("the hijacked bufio.Reader keeps a %d-byte buffer", n)
	}
	if n := handedOver.Writer.Size(); n != 0 {
		t.Errorf("the hijacked bufio.Writer keeps a %d-byte buffer", n)
	}
	// The connection still works.
	if err := client.SendText([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := client.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := server.Read(ctx); err != nil || string(msg.Data) != "hello" {
		t.Fatalf("read %q, %v", msg.Data, err)
	}
}

// hijackRecorder is a ResponseWriter that records the bufio.ReadWriter its
// Hijack hands over.
type hijackRecorder struct {
	http.ResponseWriter
	brw **bufio.ReadWriter
}

func (h hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	*h.brw = brw
	return nc, brw, err
}
