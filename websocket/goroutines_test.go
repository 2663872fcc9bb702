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
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// serverGoroutines counts the goroutines labelled side=server: those of a
// server started under that label and every goroutine they started.
func serverGoroutines() int {
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
		if strings.HasPrefix(line, "# labels:") && strings.Contains(line, `"side":"server"`) {
			n += last
			last = 0
		}
	}
	return n
}

// settledServerGoroutines waits for the count to stop moving.
func settledServerGoroutines() int {
	prev := -1
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		n := serverGoroutines()
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
