package websocket_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// serverGoroutines counts the goroutines labelled side=server: those of a
// server started under that label and every goroutine they started.
func serverGoroutines() int { return labelledGoroutines("server") }

// labelledGoroutines counts the goroutines labelled side=side: those
// started under that label (pprof.Do) and every goroutine they started,
// which inherit it.
func labelledGoroutines(side string) int {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	count := regexp.MustCompile(`^(\d+) @`)
	n, last := 0, 0
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := count.FindStringSubmatch(line); m != nil {
			last, _ = strconv.Atoi(m[1])
			continue
		}
		if strings.HasPrefix(line, "# labels:") && strings.Contains(line, `"side":"`+side+`"`) {
			n += last
			last = 0
		}
	}
	return n
}

// settledServerGoroutines waits for the count to stop moving.
func settledServerGoroutines() int { return settledGoroutines("server") }

// settledGoroutines waits for the count of side's goroutines to stop moving.
func settledGoroutines(side string) int {
	prev := -1
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		n := labelledGoroutines(side)
		if n == prev {
			return n
		}
		prev = n
	}
	return prev
}

// TestGoroutinesPerIdleConnection measures what an idle WebSocket costs in
// goroutines on the server, for Open and for Accept followed by a goroutine
// of the caller's, over HTTP/1.1 and HTTP/2, with keepalive off and on. The
// server's goroutines are told apart from the client's by a pprof label.
// Over HTTP/2 the connections share one TCP connection, whose own
// goroutines (net/http's serve and frame reader) are counted before the
// WebSockets open.
func TestGoroutinesPerIdleConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	const n = 50
	type result struct{ perConn float64 }
	results := map[string]float64{}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		for _, mode := range []string{"Open", "Accept"} {
			for _, ping := range []time.Duration{0, time.Minute} {
				name := fmt.Sprintf("%s/%s/keepalive=%v", proto, mode, ping > 0)
				t.Run(name, func(t *testing.T) {
					per := idleGoroutines(t, proto == "HTTP/2", mode, ping, n)
					results[name] = per
					t.Logf("%s: %.2f goroutines per idle WebSocket on the server", name, per)
				})
			}
		}
	}
	for _, mode := range []string{"Open", "Accept"} {
		for _, ka := range []string{"false", "true"} {
			h1 := results["HTTP/1.1/"+mode+"/keepalive="+ka]
			h2 := results["HTTP/2/"+mode+"/keepalive="+ka]
			t.Logf("%-6s keepalive=%-5s HTTP/1.1 %.2f  HTTP/2 %.2f", mode, ka, h1, h2)
		}
	}
	// HTTP/2 costs what HTTP/1.1 does: Open's handler runs on the stream's
	// goroutine as it runs on the connection's over HTTP/1.1. Accept over
	// HTTP/2 keeps net/http's stream goroutine too, since the stream lives
	// as long as the handler.
	if h1, h2 := results["HTTP/1.1/Open/keepalive=false"], results["HTTP/2/Open/keepalive=false"]; h2 > h1+0.1 {
		t.Errorf("Open: an idle WebSocket costs %.2f goroutines over HTTP/2 against %.2f over HTTP/1.1", h2, h1)
	}
	if h1, h2 := results["HTTP/1.1/Accept/keepalive=false"], results["HTTP/2/Accept/keepalive=false"]; h2 > h1+1.1 {
		t.Errorf("Accept: an idle WebSocket costs %.2f goroutines over HTTP/2 against %.2f over HTTP/1.1 (+1 for the stream's handler)", h2, h1)
	}
	// Keepalive costs no goroutine per connection.
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		for _, mode := range []string{"Open", "Accept"} {
			off := results[proto+"/"+mode+"/keepalive=false"]
			on := results[proto+"/"+mode+"/keepalive=true"]
			if on > off+0.1 {
				t.Errorf("%s %s: keepalive adds %.2f goroutines per connection", proto, mode, on-off)
			}
		}
	}
}

func idleGoroutines(t *testing.T, http2 bool, mode string, ping time.Duration, n int) float64 {
	opts := &websocket.AcceptOptions{Options: websocket.Options{PingInterval: ping}}
	release := make(chan struct{})
	ready := make(chan struct{}, n+1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode {
		case "Open":
			websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
				ready <- struct{}{}
				for {
					if _, err := c.Read(ctx); err != nil {
						return err
					}
				}
			})
		case "Accept":
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				return
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer c.CloseNow()
				ready <- struct{}{}
				for {
					if _, err := c.Read(context.Background()); err != nil {
						return
					}
				}
			}()
			if r.ProtoMajor == 2 {
				<-done // the stream lives as long as the handler
			}
		}
	})
	srv := httptest.NewUnstartedServer(handler)
	srv.EnableHTTP2 = true
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) {
		srv.StartTLS()
	})
	defer srv.Close()
	defer close(release)

	tr := srv.Client().Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true
	version := websocket.HTTP1
	if http2 {
		version = websocket.HTTP2
	}
	dopts := &websocket.DialOptions{HTTPClient: srv.Client(), HTTPVersion: version}
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	ctx := testCtx(t)

	// One connection first, so that over HTTP/2 the shared TCP connection
	// and its goroutines exist before counting.
	first, _, err := websocket.Dial(ctx, url, dopts)
	if err != nil {
		t.Fatal(err)
	}
	defer first.CloseNow()
	<-ready
	base := settledServerGoroutines()

	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, url, dopts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns[i] = c
		<-ready
	}
	after := settledServerGoroutines()
	for _, c := range conns {
		c.Close(websocket.StatusNormalClosure, "")
	}
	return float64(after-base) / float64(n)
}

// TestClientGoroutinesPerIdleConnection measures what an idle WebSocket
// from Dial costs in goroutines on the client, over HTTP/1.1 and HTTP/2,
// with keepalive off and on, and with the caller's connections left alone
// or each read by a goroutine of the caller's (under a context that can
// end, or under one that cannot). Dial and the caller's goroutines run
// under a pprof label, which every goroutine they start inherits, so that
// the server's goroutines in the same process are not counted; the count
// includes the caller's reading goroutines. Over HTTP/2 the WebSockets
// share one TCP connection, whose goroutine (net/http's frame reader) is
// counted before they open, with one WebSocket that exists already.
//
// The bounds, per connection:
//
//   - HTTP/1.1: nothing but the caller's reading goroutine, if it reads.
//     After the 101 response net/http's connection goroutines end and the
//     socket is the Conn's; a Read waits in the caller's goroutine, and a
//     context that can end is followed with context.AfterFunc, which starts
//     a goroutine only when the context ends.
//   - HTTP/2: net/http's goroutine that writes the request body of the
//     extended CONNECT (RoundTrip starts clientStream.doRequest, in
//     h2_bundle.go, which writes the body until it ends, and the body is
//     the stream's outgoing half), plus the caller's reading goroutine. A
//     Read under a context that can end reads the stream in one more
//     goroutine while it waits (read-ahead, http2_stream.go), so that
//     giving up leaves the stream readable; under a context that cannot
//     end, the caller's goroutine reads the stream directly.
//   - Keepalive adds none: one goroutine per process schedules the pings.
func TestClientGoroutinesPerIdleConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	const n = 50
	readers := []string{"none", "ctx", "background"}
	// Goroutines per connection, the caller's reading goroutine included;
	// see above.
	bounds := map[string]float64{
		"HTTP/1.1/none": 0, "HTTP/1.1/ctx": 1, "HTTP/1.1/background": 1,
		"HTTP/2/none": 1, "HTTP/2/ctx": 3, "HTTP/2/background": 2,
	}
	results := map[string]float64{}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		for _, reader := range readers {
			for _, ping := range []time.Duration{0, time.Minute} {
				name := fmt.Sprintf("%s/reader=%s/keepalive=%v", proto, reader, ping > 0)
				t.Run(name, func(t *testing.T) {
					per := clientIdleGoroutines(t, proto == "HTTP/2", reader, ping, n)
					results[name] = per
					t.Logf("%s: %.2f goroutines per idle WebSocket on the client", name, per)
					// Half a goroutine of slack: a count that moves while
					// it is taken (a straggler of the previous subtest)
					// shows as a fraction, a goroutine per connection as 1.
					if bound := bounds[proto+"/"+reader]; per > bound+0.5 {
						t.Errorf("%.2f goroutines per idle connection, want at most %v", per, bound)
					}
				})
			}
		}
	}
	for _, reader := range readers {
		for _, ka := range []string{"false", "true"} {
			h1 := results["HTTP/1.1/reader="+reader+"/keepalive="+ka]
			h2 := results["HTTP/2/reader="+reader+"/keepalive="+ka]
			t.Logf("client reader=%-10s keepalive=%-5s HTTP/1.1 %.2f  HTTP/2 %.2f", reader, ka, h1, h2)
		}
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		for _, reader := range readers {
			off := results[proto+"/reader="+reader+"/keepalive=false"]
			on := results[proto+"/reader="+reader+"/keepalive=true"]
			if on > off+0.1 {
				t.Errorf("%s reader=%s: keepalive adds %.2f goroutines per connection on the client", proto, reader, on-off)
			}
		}
	}
}

// clientIdleGoroutines dials n+1 WebSockets, the first to set up what they
// share, and returns how many goroutines labelled side=client each of the
// last n adds once all are idle. reader says whether the caller reads each
// connection in a goroutine of its own, and under which context: "none",
// "ctx" (one that can end) or "background" (one that cannot).
func clientIdleGoroutines(t *testing.T, http2 bool, reader string, ping time.Duration, n int) float64 {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			for {
				if _, err := c.Read(ctx); err != nil {
					return err
				}
			}
		})
	}))
	srv.EnableHTTP2 = true
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) {
		srv.StartTLS()
	})
	defer srv.Close()

	// A transport of this test's own, so that its HTTP/2 connection, and
	// the goroutine that reads it, are not left to the next subtest.
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	defer tr.CloseIdleConnections()
	version := websocket.HTTP1
	if http2 {
		version = websocket.HTTP2
	}
	dopts := &websocket.DialOptions{
		HTTPClient:  &http.Client{Transport: tr},
		HTTPVersion: version,
		Options:     websocket.Options{PingInterval: ping},
	}
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	testCtx := testCtx(t)

	var conns []*websocket.Conn
	readCtx, stopReading := context.WithCancel(testCtx)
	var readers sync.WaitGroup
	defer func() {
		// Closing handshakes, with the readers still reading: a Read
		// under a context that can end leaves a read-ahead goroutine on
		// the HTTP/2 stream when the context ends, and one left there
		// as the connection closes waits for the stream's end alongside
		// the goroutine that drains it (clientStreamEnd.finish) -- two
		// readers of one response body, of which net/http's pipe wakes
		// only one at its end, so that the other stays until the body
		// is closed after http2CloseGrace.
		var closing sync.WaitGroup
		for _, c := range conns {
			closing.Go(func() { c.Close(websocket.StatusNormalClosure, "") })
		}
		closing.Wait()
		stopReading()
		readers.Wait()
		// Dial's HTTP/2 connections are pooled in a transport of its own,
		// out of reach of tr.CloseIdleConnections: closing the server
		// ends them.
		srv.Close()
		// What the connections leave behind must end, so that the next
		// subtest counts from zero; how long it takes is measured.
		start := time.Now()
		for labelledGoroutines("client") > 0 && time.Since(start) < 5*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		if n := labelledGoroutines("client"); n > 0 {
			t.Errorf("%d client goroutines left %v after the connections closed", n, time.Since(start).Round(time.Millisecond))
		} else {
			t.Logf("the client's goroutines ended %v after the server closed", time.Since(start).Round(time.Millisecond))
		}
	}()
	var per float64
	pprof.Do(testCtx, pprof.Labels("side", "client"), func(ctx context.Context) {
		dial := func() bool {
			c, _, err := websocket.Dial(ctx, url, dopts)
			if err != nil {
				t.Error(err)
				return false
			}
			conns = append(conns, c)
			rctx := readCtx
			switch reader {
			case "none":
				return true
			case "background":
				rctx = context.Background() // no Done channel: nothing to follow
			}
			readers.Go(func() {
				for {
					if _, err := c.Read(rctx); err != nil {
						return
					}
				}
			})
			return true
		}
		if !dial() {
			return
		}
		base := settledGoroutines("client")
		for range n {
			if !dial() {
				return
			}
		}
		after := settledGoroutines("client")
		per = float64(after-base) / float64(n)
	})
	return per
}
