package websocket_test

// Churn: many WebSockets opened and ended in every way a connection ends in the wild, against
// one real server, after which nothing of them may remain: no goroutine (goleak), no file
// descriptor (/proc/self/fd), no heap beyond a small tolerance (runtime/metrics). The server
// also has to have seen each end for what it was (the close codes of its connections).

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
	"go.uber.org/goleak"
)

// churnEnd is how the client ends one cycle.
type churnEnd int

const (
	// endClientClose: an echo, then the client's closing handshake (1000).
	endClientClose churnEnd = iota
	// endServerClose: an echo, then "bye", which the server answers by closing (1000).
	endServerClose
	// endProtocolError: an unmasked frame from the client, which the server fails (1002).
	endProtocolError
	// endReset: an echo, then an abrupt end: TCP RST (SO_LINGER 0), or RST_STREAM over HTTP/2.
	endReset
	// endMidFrame: an echo, then part of a frame, then the client is gone: TCP FIN or RST;
	// over HTTP/2 RST_STREAM, or the whole HTTP/2 connection dropped.
	endMidFrame
	// endHandshake: the client vanishes during the handshake: part of the request or all of
	// it without waiting for the answer; over HTTP/2 the extended CONNECT cancelled at once,
	// or a TLS connection dropped before HTTP/2 starts.
	endHandshake
	churnEnds
)

func (e churnEnd) String() string {
	return [...]string{"client-close", "server-close", "protocol-error", "reset", "mid-frame", "handshake"}[e]
}

// serverSaw lists what the server may see of a connection for each end: how its last Read
// ended and the code of the close frame it sent (see serverOutcome). A handshake that the
// client abandons may also never reach a handler, which leaves no outcome at all.
var serverSaw = map[churnEnd][]string{
	endClientClose:   {"read 1000 from peer, sent 1000"},
	endServerClose:   {"read nothing, sent 1000"},
	endProtocolError: {"read 1002, sent 1002"},
	endReset:         {"read 1006, sent 0"},
	endMidFrame:      {"read 1006, sent 0"},
	endHandshake:     {"read 1006, sent 0"},
}

// churnCycle is one connection of the churn.
type churnCycle struct {
	n    int // its number: it also picks the variant of an end (FIN or RST, ...)
	end  churnEnd
	h2   bool   // over an HTTP/2 stream (RFC 8441) rather than HTTP/1.1
	path string // "/open" (a websocket.Server) or "/accept" (websocket.Accept)
}

// cycleOf spreads the cycles evenly over ends, transports and handlers.
func cycleOf(n int) churnCycle {
	k := n / int(churnEnds)
	return churnCycle{n: n, end: churnEnd(n % int(churnEnds)), h2: k%2 == 1, path: [...]string{"/open", "/accept"}[k/2%2]}
}

func (c churnCycle) transport() string {
	if c.h2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

func (c churnCycle) target() string { return fmt.Sprintf("%s?end=%d", c.path, c.end) }

func (c churnCycle) String() string {
	return fmt.Sprintf("cycle %d (%s, %s %s)", c.n, c.end, c.transport(), c.path)
}

// TestChurn runs connect/close cycles, 64 at a time, mixing every churnEnd over HTTP/1.1 and
// HTTP/2, with the server's handler in websocket.Server (Open) and in websocket.Accept. Once
// the clients are done the server's connections must all end by themselves; once the servers
// are closed nothing may be left: the goroutines, the file descriptors and the heap of before.
// DUPLEX_LONG=1 runs 100k cycles.
func TestChurn(t *testing.T) {
	cycles := 3600 // about 12 s of CPU under -race on this machine (2 cores)
	switch {
	case os.Getenv("DUPLEX_LONG") == "1":
		cycles = 100_000
	case testing.Short():
		cycles = 600
	}
	const concurrency = 64
	leaks := goleak.IgnoreCurrent()

	// A first round sets up what lives as long as the process (TLS, net/http's HTTP/2, the
	// heap's own spans), so that what the churn leaves can be told from it.
	fdsBefore := openFDs(t)
	warm := startChurnRig(t)
	warm.run(0, 2*int(churnEnds)*4, concurrency)
	warm.close()
	if t.Failed() {
		return
	}
	heapBefore := heapObjectBytes()
	goroutinesBefore := runtime.NumGoroutine()

	rig := startChurnRig(t)
	start := time.Now()
	// The last cycles run without the garbage collector, and so do the counts after them: a
	// socket that nothing closes is closed by its finalizer once collected, which would hide
	// the leak from the count of file descriptors.
	tail := min(cycles, 4*concurrency)
	rig.run(0, cycles-tail, concurrency)
	gcPercent := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(gcPercent)
	rig.run(cycles-tail, cycles, concurrency)
	took := time.Since(start)
	rig.checkOutcomes(cycles)
	rig.close()

	fdsAfter := settledFDs(fdsBefore)
	debug.SetGCPercent(gcPercent)
	if err := goleak.Find(leaks); err != nil {
		t.Error(err)
	}
	goroutinesAfter := runtime.NumGoroutine()
	heapAfter := heapObjectBytes()
	t.Logf("%d cycles, %d at a time, in %v (%.0f cycles/s)", cycles, concurrency, took.Round(time.Millisecond), float64(cycles)/took.Seconds())
	t.Logf("goroutines: %d before, %d after", goroutinesBefore, goroutinesAfter)
	t.Logf("file descriptors: %d before, %d after", fdsBefore, fdsAfter)
	t.Logf("heap objects: %d bytes before, %d after (%+d bytes, %+.1f per cycle)",
		heapBefore, heapAfter, int64(heapAfter)-int64(heapBefore), float64(int64(heapAfter)-int64(heapBefore))/float64(cycles))
	if fdsAfter > fdsBefore {
		t.Errorf("%d file descriptors left open: %d before the churn, %d after", fdsAfter-fdsBefore, fdsBefore, fdsAfter)
	}
	// What is left beyond a connection's worth of noise (a pool's buffers, a map's grown
	// buckets) is a leak; 100k cycles leaking 16 bytes each would pass, so the long run's
	// figures are also printed to be read.
	const heapTolerance = 1 << 20
	if grew := int64(heapAfter) - int64(heapBefore); grew > heapTolerance {
		t.Errorf("the heap kept %d bytes after %d cycles (%.0f per cycle), more than the %d bytes allowed",
			grew, cycles, float64(grew)/float64(cycles), heapTolerance)
	}
}

// churnRig is the server of the churn, over HTTP/1.1 (plain TCP) and HTTP/2 (TLS), with the
// clients' shared parts.
type churnRig struct {
	t      *testing.T
	h1, h2 *httptest.Server
	server *websocket.Server // serves /open
	opts   websocket.AcceptOptions

	h1Client, h2Client *http.Client // for Dial
	rawTransport       *http.Transport
	rawConn            *tls.Conn         // a raw HTTP/2 connection shared by raw streams
	rawRT              http.RoundTripper // its client side

	acceptOpen atomic.Int64 // connections from /accept not yet ended
	openEnds   atomic.Int64 // End hooks of /open's connections that returned
	readErrs   sync.Map     // *http.Request -> error: how /open's handler's Read ended

	mu       sync.Mutex
	outcomes map[string]map[string]int // transport path end -> what the server saw -> count
	failures atomic.Int64
}

func startChurnRig(t *testing.T) *churnRig {
	t.Helper()
	r := &churnRig{t: t, outcomes: map[string]map[string]int{}}
	r.opts.CloseTimeout = caseCloseTimeout
	r.server = &websocket.Server{Options: r.opts, Hooks: websocket.ServerHooks{End: r.openEnded}}
	mux := http.NewServeMux()
	mux.HandleFunc("/open", func(w http.ResponseWriter, req *http.Request) {
		r.server.Open(w, req, func(ctx context.Context, c *websocket.Conn) error {
			err := churnEcho(ctx, c)
			r.readErrs.Store(req, err)
			return err
		})
	})
	mux.HandleFunc("/accept", r.serveAccept)
	// The churn provokes the errors net/http logs (TLS handshakes cut short, connections
	// dropped in the middle of a request): they are the test's doing, not news.
	quiet := log.New(io.Discard, "", 0)
	r.h1 = httptest.NewUnstartedServer(mux)
	r.h1.Config.ErrorLog = quiet
	r.h1.Start()
	r.h2 = httptest.NewUnstartedServer(mux)
	r.h2.Config.ErrorLog = quiet
	r.h2.EnableHTTP2 = true
	r.h2.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	r.h2.StartTLS()

	r.h1Client = &http.Client{Transport: &http.Transport{}}
	tr := r.h2.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	r.h2Client = &http.Client{Transport: tr}
	r.rawTransport = rawH2Transport(r.h2)
	// The cycles that drop an HTTP/2 connection dial one each: resumed TLS sessions keep that cheap.
	r.rawTransport.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	var err error
	r.rawConn, r.rawRT, err = dialRawH2(r.rawTransport, r.h2.Listener.Addr().String())
	if err != nil {
		r.h1.Close()
		r.h2.Close()
		t.Fatal(err)
	}
	return r
}

// churnEcho is the server's application: echo every message until "bye", then close.
func churnEcho(ctx context.Context, c *websocket.Conn) error {
	for {
		m, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if string(m.Data) == "bye" {
			return nil // Open, or serveAccept, closes with 1000
		}
		if err := c.Write(ctx, m.Type, m.Data); err != nil {
			return err
		}
	}
}

// serveAccept runs churnEcho on a connection from Accept, in a goroutine of its own as an
// application that manages its connections would; over HTTP/2 the handler waits for it, as
// the stream lives as long as the handler.
func (r *churnRig) serveAccept(w http.ResponseWriter, req *http.Request) {
	c, err := websocket.Accept(w, req, &r.opts)
	if err != nil {
		return
	}
	r.acceptOpen.Add(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.acceptOpen.Add(-1)
		err := churnEcho(context.Background(), c)
		if err == nil {
			c.Close(websocket.StatusNormalClosure, "")
		}
		c.CloseNow()
		r.record(req, serverOutcome(err, c.Stats()))
	}()
	if req.ProtoMajor == 2 {
		<-done
	}
}

// openEnded is the Server's End hook: the final stats of a connection of /open.
func (r *churnRig) openEnded(info websocket.EndInfo) {
	err, _ := r.readErrs.LoadAndDelete(info.Request)
	readErr, _ := err.(error)
	r.record(info.Request, serverOutcome(readErr, info.Stats))
	r.openEnds.Add(1)
}

// serverOutcome says how the server's last Read ended and what close frame it sent.
func serverOutcome(readErr error, st websocket.ConnStats) string {
	read := "nothing"
	var ce *websocket.CloseError
	switch {
	case errors.As(readErr, &ce):
		read = fmt.Sprint(int(ce.Code))
		if ce.Remote {
			read += " from peer"
		}
	case readErr != nil:
		read = fmt.Sprintf("%T", readErr)
	}
	return fmt.Sprintf("read %s, sent %d", read, int(st.CloseSent))
}

func (r *churnRig) record(req *http.Request, outcome string) {
	proto := "HTTP/1.1"
	if req.ProtoMajor == 2 {
		proto = "HTTP/2"
	}
	key := fmt.Sprintf("%s %s end=%s", proto, req.URL.Path, req.URL.Query().Get("end"))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcomes[key] == nil {
		r.outcomes[key] = map[string]int{}
	}
	r.outcomes[key][outcome]++
}

// run runs the cycles numbered from from to to, concurrency at a time.
func (r *churnRig) run(from, to, concurrency int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewSource(time.Now().UnixNano()))
			for {
				n := int(next.Add(1) - 1)
				if n >= to {
					return
				}
				c := cycleOf(n)
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err := r.cycle(cctx, c, rng)
				cancel()
				if err != nil {
					r.fail(c, err)
				}
			}
		})
	}
	wg.Wait()
}

// fail reports a cycle that went wrong; the first few in full.
func (r *churnRig) fail(c churnCycle, err error) {
	if n := r.failures.Add(1); n <= 10 {
		r.t.Errorf("%v: %v", c, err)
	} else if n == 11 {
		r.t.Error("more cycles failed; only the first 10 are reported")
	}
}

func (r *churnRig) cycle(ctx context.Context, c churnCycle, rng *rand.Rand) error {
	switch c.end {
	case endClientClose, endServerClose:
		return r.dialCycle(ctx, c)
	case endHandshake:
		if c.h2 {
			return r.abandonH2Handshake(ctx, c, rng)
		}
		return r.abandonH1Handshake(c)
	}
	p, drop, err := r.rawPeer(ctx, c, rng)
	if err != nil {
		return err
	}
	defer drop(false)
	switch c.end {
	case endProtocolError:
		// RFC 6455 5.1: a server MUST close the connection upon a frame that is not masked.
		p.conn.Write(p.frame(opText, true, []byte("unmasked"), forceUnmasked()))
		e := p.next()
		if e.kind != opClose || len(e.payload) < 2 || binary.BigEndian.Uint16(e.payload) != 1002 {
			return fmt.Errorf("after an unmasked frame got %v, want a close frame 1002", e)
		}
		p.conn.Write(p.closeFrame(1002, ""))
		return nil
	case endReset:
		if err := rawEcho(p); err != nil {
			return err
		}
		drop(true)
		return nil
	case endMidFrame:
		if err := rawEcho(p); err != nil {
			return err
		}
		f, hdr := p.frameH(opBinary, true, make([]byte, 1000))
		cut := 1 + rng.Intn(hdr+99) // in the header or in the payload, never the whole frame
		p.conn.Write(f[:cut])
		drop(c.n/int(churnEnds)/4%2 == 1)
		return nil
	}
	return fmt.Errorf("no such end %d", c.end)
}

// rawEcho sends a text message and expects it back.
func rawEcho(p *peer) error {
	p.conn.Write(p.text("hello", true))
	if e := p.next(); e.kind != opText || string(e.payload) != "hello" {
		return fmt.Errorf("got %v, want the echo of %q", e, "hello")
	}
	return nil
}

// dialCycle is a cycle of websocket.Dial: an echo, then a clean close from either side.
func (r *churnRig) dialCycle(ctx context.Context, c churnCycle) error {
	url := "ws" + strings.TrimPrefix(r.h1.URL, "http") + c.target()
	opts := &websocket.DialOptions{HTTPClient: r.h1Client}
	if c.h2 {
		url = "wss" + strings.TrimPrefix(r.h2.URL, "https") + c.target()
		opts = &websocket.DialOptions{HTTPClient: r.h2Client, HTTPVersion: websocket.HTTP2}
	}
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		return err
	}
	if m, err := conn.Read(ctx); err != nil || string(m.Data) != "hello" {
		return fmt.Errorf("echo: %q, %v", m.Data, err)
	}
	if c.end == endClientClose {
		return conn.Close(websocket.StatusNormalClosure, "")
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte("bye")); err != nil {
		return err
	}
	_, err = conn.Read(ctx)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || !ce.Remote {
		return fmt.Errorf("after bye: Read returned %v, want the server's close 1000", err)
	}
	return nil
}

// rawPeer opens a connection of the raw client and does its handshake. drop ends it: with a
// reset (TCP RST, RST_STREAM, or a dropped HTTP/2 connection) or without (TCP FIN, END_STREAM).
func (r *churnRig) rawPeer(ctx context.Context, c churnCycle, rng *rand.Rand) (p *peer, drop func(reset bool), err error) {
	p = &peer{t: r.t, side: serverSide, rng: rand.New(rand.NewSource(rng.Int63()))}
	if !c.h2 {
		conn, err := net.DialTimeout("tcp", r.h1.Listener.Addr().String(), ioTimeout)
		if err != nil {
			return nil, nil, err
		}
		p.conn, p.br = conn, bufio.NewReader(conn)
		if err := p.tryClientHandshake(r.h1.Listener.Addr().String(), c.target()); err != nil {
			conn.Close()
			return nil, nil, err
		}
		return p, func(reset bool) {
			if reset {
				conn.(*net.TCPConn).SetLinger(0)
			}
			conn.Close()
		}, nil
	}
	// A mid-frame drop of every other HTTP/2 cycle drops the HTTP/2 connection: one of its own.
	rt := r.rawRT
	var own *tls.Conn
	if c.end == endMidFrame && c.n/int(churnEnds)/4%2 == 1 {
		if own, rt, err = dialRawH2(r.rawTransport, r.h2.Listener.Addr().String()); err != nil {
			return nil, nil, err
		}
	}
	sctx, endStream := context.WithCancel(context.WithoutCancel(ctx))
	resp, pw, err := openRawH2Stream(sctx, rt, r.h2.URL+c.target())
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		pw.Close()
		err = fmt.Errorf("extended CONNECT: status %s", resp.Status)
	}
	if err != nil {
		endStream()
		if own != nil {
			own.Close()
		}
		return nil, nil, err
	}
	s := rawH2Stream(resp, pw)
	p.h2, p.conn, p.br = true, s, bufio.NewReader(s)
	var once sync.Once
	return p, func(reset bool) {
		once.Do(func() {
			switch {
			case own != nil:
				own.Close()
			case reset:
				s.abort() // the request body fails: net/http resets the stream
			}
			s.Close()
			endStream()
		})
	}, nil
}

// abandonH1Handshake sends part of an opening handshake, or all of it, and resets the
// connection without waiting for the answer.
func (r *churnRig) abandonH1Handshake(c churnCycle) error {
	addr := r.h1.Listener.Addr().String()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return err
	}
	req := "GET " + c.target() + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if c.n/int(churnEnds)/4%2 == 0 {
		req = req[:len(req)/2]
	}
	conn.Write([]byte(req))
	conn.(*net.TCPConn).SetLinger(0)
	return conn.Close()
}

// abandonH2Handshake cancels an extended CONNECT at once (RST_STREAM before or after the
// server's answer), or drops a new TLS connection before a byte of HTTP/2.
func (r *churnRig) abandonH2Handshake(ctx context.Context, c churnCycle, rng *rand.Rand) error {
	if c.n/int(churnEnds)/4%2 == 0 {
		own, err := dialH2TLS(r.rawTransport, r.h2.Listener.Addr().String())
		if err != nil {
			return err
		}
		return own.Close()
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := time.AfterFunc(time.Duration(rng.Intn(300))*time.Microsecond, cancel)
	defer stop.Stop()
	resp, pw, err := openRawH2Stream(sctx, r.rawRT, r.h2.URL+c.target())
	if err == nil {
		cancel()
		resp.Body.Close()
		pw.Close()
	}
	return nil
}

// checkOutcomes waits for the server's connections to end by themselves, then checks that it
// saw each end for what it was, and that it saw every connection that was not abandoned.
func (r *churnRig) checkOutcomes(cycles int) {
	t := r.t
	// The End hook runs after a connection has left Stats().Open (hooks.go),
	// so the hooks are waited for too: Open == 0 alone raced the last one.
	done := func() bool {
		st := r.server.Stats()
		return st.Open == 0 && r.acceptOpen.Load() == 0 && r.openEnds.Load() == int64(st.Ended)
	}
	if !pollUntil(15*time.Second, done) {
		t.Errorf("15s after the clients were done, the server still has %d connections of Open and %d of Accept",
			r.server.Stats().Open, r.acceptOpen.Load())
	}
	want := map[string]int{} // per transport, path and end: the cycles run
	for n := range cycles {
		c := cycleOf(n)
		want[fmt.Sprintf("%s %s end=%d", c.transport(), c.path, c.end)]++
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, key := range slices.Sorted(maps.Keys(want)) {
		var end churnEnd
		fmt.Sscanf(key[strings.LastIndex(key, "=")+1:], "%d", &end)
		seen := 0
		var lines []string
		for outcome, n := range r.outcomes[key] {
			seen += n
			lines = append(lines, fmt.Sprintf("%d× %s", n, outcome))
			if !slices.Contains(serverSaw[end], outcome) {
				t.Errorf("%s (%s): the server saw %q %d times; want one of %q", key, end, outcome, n, serverSaw[end])
			}
		}
		slices.Sort(lines)
		t.Logf("%-28s %-14s %5d cycles, server saw: %s", key, end, want[key], strings.Join(lines, "; "))
		if end != endHandshake && seen != want[key] {
			t.Errorf("%s (%s): the server saw %d connections end, want %d", key, end, seen, want[key])
		}
	}
}

// close waits for the server's connections to end, then closes the servers and the clients'
// connections.
func (r *churnRig) close() {
	r.rawConn.Close()
	r.h1Client.CloseIdleConnections()
	r.h2Client.CloseIdleConnections()
	r.rawTransport.CloseIdleConnections()
	// Dial's HTTP/2 connections are pooled in a transport of its own, out of reach of
	// CloseIdleConnections: closing the server ends them.
	r.h1.Close()
	r.h2.Close()
	// A handshake abandoned late may still be in a handler.
	if !pollUntil(15*time.Second, func() bool { return r.server.Stats().Open == 0 && r.acceptOpen.Load() == 0 }) {
		r.t.Errorf("15s after the servers closed, %d connections of Open and %d of Accept remain",
			r.server.Stats().Open, r.acceptOpen.Load())
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(fds)
}

// settledFDs waits, briefly, for the count of file descriptors to come down to want: a
// socket's descriptor is released by the goroutine that last used it.
func settledFDs(want int) int {
	n := 0
	pollUntil(5*time.Second, func() bool {
		fds, _ := os.ReadDir("/proc/self/fd")
		n = len(fds)
		return n <= want
	})
	return n
}

// heapObjectBytes is the heap that live objects (and not yet swept dead ones) hold after a
// full collection.
func heapObjectBytes() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
