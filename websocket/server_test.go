package websocket_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/duplexws/duplex/websocket"
	_ "github.com/duplexws/duplex/websocket/http2xconnect" // extended CONNECT in net/http's server
)

// serverTestTimeout bounds every wait of these tests.
const serverTestTimeout = 30 * time.Second

// noLeaks fails t if goroutines started after this call outlive the test and
// its cleanups. Call it first, so that its cleanup runs last.
func noLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// waitFor polls cond until it holds; what says what was awaited.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !pollUntil(serverTestTimeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// pollUntil polls cond until it holds, or d has passed: it reports whether cond held.
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// startH1 serves h over HTTP/1.1 and returns the server and its ws:// URL.
func startH1(t *testing.T, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts, "ws" + strings.TrimPrefix(ts.URL, "http")
}

// startH2 serves h over HTTPS with HTTP/2 and extended CONNECT, and returns
// the server, its wss:// URL and a client that trusts it and speaks HTTP/2.
func startH2(t *testing.T, h http.Handler) (*httptest.Server, string, *http.Client) {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	client := ts.Client()
	client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	return ts, "wss" + strings.TrimPrefix(ts.URL, "https"), client
}

// readEnd reads from c until Read fails and returns the error and when.
type readEnd struct {
	err error
	at  time.Time
}

func readUntilEnd(ctx context.Context, c *websocket.Conn) readEnd {
	for {
		if _, err := c.Read(ctx); err != nil {
			return readEnd{err, time.Now()}
		}
	}
}

// TestServerShutdownWithHTTPServerShutdown is issue 9's test: 200 WebSockets
// over HTTP/1.1 and 50 over HTTP/2, all served by one websocket.Server behind
// two http.Servers, get the close code when the http.Servers shut down with
// the documented pattern; every handler ends and no goroutine is left. With
// a DrainWindow, the spread of the close frames' arrivals is logged.
func TestServerShutdownWithHTTPServerShutdown(t *testing.T) {
	const nH1, nH2 = 200, 50
	cases := []struct {
		name       string
		code       websocket.StatusCode // ShutdownCode; 0 for the default
		wantCode   websocket.StatusCode
		wantReason string
		window     time.Duration
	}{
		{"default 1001", 0, websocket.StatusGoingAway, "going away", 0},
		{"1012 spread over 1s", websocket.StatusServiceRestart, websocket.StatusServiceRestart, "service restart", time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			var handlerEnds sync.Map // *websocket.Conn -> error
			var handlersRunning atomic.Int32
			ws := &websocket.Server{
				ShutdownCode: tc.code,
				DrainWindow:  tc.window,
				Handler: func(ctx context.Context, c *websocket.Conn) error {
					handlersRunning.Add(1)
					defer handlersRunning.Add(-1)
					end := readUntilEnd(ctx, c)
					handlerEnds.Store(c, end.err)
					return end.err
				},
			}
			h1, h1URL := startH1(t, ws)
			h2, h2URL, h2Client := startH2(t, ws)
			for _, hs := range []*http.Server{h1.Config, h2.Config} {
				hs.RegisterOnShutdown(func() { ws.Shutdown(context.Background()) })
			}

			ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
			defer cancel()
			var clients []*websocket.Conn
			for i := range nH1 + nH2 {
				url, opts := h1URL, &websocket.DialOptions{HTTPVersion: websocket.HTTP1}
				if i >= nH1 {
					url, opts = h2URL, &websocket.DialOptions{HTTPVersion: websocket.HTTP2, HTTPClient: h2Client}
				}
				c, resp, err := websocket.Dial(ctx, url, opts)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				defer c.CloseNow()
				if want := 1 + i/nH1; resp.ProtoMajor != want {
					t.Fatalf("dial %d: HTTP/%d, want HTTP/%d", i, resp.ProtoMajor, want)
				}
				clients = append(clients, c)
			}
			waitFor(t, "every handler to be tracked", func() bool { return ws.Len() == nH1+nH2 })

			ends := make([]readEnd, len(clients))
			var readers sync.WaitGroup
			for i, c := range clients {
				readers.Go(func() { ends[i] = readUntilEnd(ctx, c) })
			}

			start := time.Now()
			var wg sync.WaitGroup
			for _, hs := range []*http.Server{h1.Config, h2.Config} {
				wg.Go(func() {
					if err := hs.Shutdown(ctx); err != nil {
						t.Errorf("http.Server.Shutdown: %v", err)
					}
				})
			}
			wg.Wait()
			if err := ws.Shutdown(ctx); err != nil {
				t.Errorf("websocket.Server.Shutdown: %v", err)
			}
			shutdownTook := time.Since(start)
			readers.Wait()

			for i, e := range ends {
				var ce *websocket.CloseError
				if !errors.As(e.err, &ce) || !ce.Remote || ce.Code != tc.wantCode || ce.Reason != tc.wantReason {
					t.Errorf("client %d (HTTP/%d): read ended with %v, want close %v %q from the server",
						i, 1+i/nH1, e.err, tc.wantCode, tc.wantReason)
				}
			}
			if n := handlersRunning.Load(); n != 0 {
				t.Errorf("%d handlers still running after Shutdown", n)
			}
			if n := ws.Len(); n != 0 {
				t.Errorf("Len() = %d after Shutdown, want 0", n)
			}
			ended := 0
			handlerEnds.Range(func(_, v any) bool {
				ended++
				// The handler's Read returns the client's echo of our close.
				var ce *websocket.CloseError
				if err, _ := v.(error); !errors.As(err, &ce) || ce.Code != tc.wantCode || !ce.Remote {
					t.Errorf("a handler's Read ended with %v, want the echo of close %v", err, tc.wantCode)
				}
				return true
			})
			if ended != nH1+nH2 {
				t.Errorf("%d handlers ended, want %d", ended, nH1+nH2)
			}

			logSpread(t, start, tc.window, shutdownTook, ends)
		})
	}
}

// logSpread logs when the close frames arrived, relative to the start of
// the shutdown. With a window it asserts only that the closes did not all
// arrive at once, with a margin far beyond any scheduling noise.
func logSpread(t *testing.T, start time.Time, window, shutdownTook time.Duration, ends []readEnd) {
	t.Helper()
	at := make([]time.Duration, len(ends))
	for i, e := range ends {
		at[i] = e.at.Sub(start)
	}
	slices.Sort(at)
	first, last := at[0], at[len(at)-1]
	t.Logf("%d closes: first after %v, last after %v (spread %v); shutdown took %v; window %v",
		len(at), first.Round(time.Microsecond), last.Round(time.Microsecond),
		(last - first).Round(time.Microsecond), shutdownTook.Round(time.Microsecond), window)
	if window <= 0 {
		return
	}
	var tenths [11]int // the last counts arrivals after the window
	for _, d := range at {
		tenths[min(max(int(d*10/window), 0), 10)]++
	}
	var b strings.Builder
	for i, n := range tenths[:10] {
		fmt.Fprintf(&b, " %d-%d%%:%d", i*10, i*10+10, n)
	}
	t.Logf("closes per tenth of the window:%s; after it: %d", b.String(), tenths[10])
	if last-first < window/20 {
		t.Errorf("all %d closes arrived within %v with a %v window: not spread", len(at), last-first, window)
	}
}

// TestHTTPServerShutdownAloneLeavesWebSockets documents why Server exists:
// http.Server.Shutdown returns while a hijacked WebSocket stays open. Server's
// own Shutdown then closes it with 1001.
func TestHTTPServerShutdownAloneLeavesWebSockets(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	ws := &websocket.Server{Handler: echoMessages}
	h1, url := startH1(t, ws)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	if err := h1.Config.Shutdown(ctx); err != nil { // no RegisterOnShutdown here
		t.Fatalf("http.Server.Shutdown: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("still there?")); err == nil {
		if msg, err := c.Read(ctx); err == nil {
			t.Logf("after http.Server.Shutdown returned the WebSocket still echoes %q: net/http forgot it", msg.Data)
		}
	}
	if n := ws.Len(); n != 1 {
		t.Errorf("Len() = %d after http.Server.Shutdown, want 1", n)
	}

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- ws.Shutdown(ctx) }()
	end := readUntilEnd(ctx, c)
	var ce *websocket.CloseError
	if !errors.As(end.err, &ce) || !ce.Remote || ce.Code != websocket.StatusGoingAway || ce.Reason != "going away" {
		t.Errorf("read during websocket.Server.Shutdown: %v, want close 1001 \"going away\" from the server", end.err)
	}
	if !errors.Is(end.err, io.EOF) {
		t.Errorf("errors.Is(%v, io.EOF) = false: 1001 is a normal end", end.err)
	}
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestServerRefusesDuringShutdown: once Shutdown began, a new WebSocket gets
// 503 with Retry-After and a plain-text message, and Shutdown waits for the
// handler that is still running.
func TestServerRefusesDuringShutdown(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	release := make(chan struct{})
	handlerDone := make(chan struct{})
	ws := &websocket.Server{Handler: func(ctx context.Context, c *websocket.Conn) error {
		defer close(handlerDone)
		<-release // neither reads nor watches ctx: Shutdown must wait for it
		return nil
	}}
	// A second endpoint runs its own handler through ws.Open.
	openErr := make(chan error, 1)
	mux := http.NewServeMux()
	mux.Handle("/", ws)
	mux.HandleFunc("/open", func(w http.ResponseWriter, r *http.Request) {
		openErr <- ws.Open(w, r, func(ctx context.Context, c *websocket.Conn) error { return nil })
	})
	_, url := startH1(t, mux)
	_, h2URL, h2Client := startH2(t, mux)

	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	waitFor(t, "the handler to be tracked", func() bool { return ws.Len() == 1 })

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- ws.Shutdown(ctx) }()
	// The client gets the close frame: Shutdown has begun.
	end := readUntilEnd(ctx, c)
	var ce *websocket.CloseError
	if !errors.As(end.err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("read: %v, want close 1001", end.err)
	}

	for _, d := range []struct {
		url  string
		opts *websocket.DialOptions
	}{
		{url, nil},
		{h2URL, &websocket.DialOptions{HTTPVersion: websocket.HTTP2, HTTPClient: h2Client}},
	} {
		_, resp, err := websocket.Dial(ctx, d.url, d.opts)
		var he *websocket.HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
			t.Fatalf("dial %s during shutdown: %v, want a 503 handshake error", d.url, err)
		}
		if resp == nil {
			t.Fatalf("dial %s during shutdown: no response", d.url)
		}
		if got := resp.Header.Get("Retry-After"); got == "" {
			t.Errorf("dial %s: 503 without Retry-After", d.url)
		}
		if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain") {
			t.Errorf("dial %s: 503 with Content-Type %q, want text/plain", d.url, got)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "shutting down") {
			t.Errorf("dial %s: 503 body %q does not say the server is shutting down", d.url, body)
		}
	}
	if _, _, err := websocket.Dial(ctx, url+"/open", nil); err == nil {
		t.Error("dial /open during shutdown succeeded, want 503")
	}
	var he *websocket.HandshakeError
	if err := <-openErr; !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Errorf("Server.Open during shutdown returned %v, want a 503 *HandshakeError", err)
	}

	select {
	case err := <-shutdownErr:
		t.Fatalf("Shutdown returned %v while a handler still runs", err)
	default:
	}
	close(release)
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	<-handlerDone
}

// TestServerShutdownDeadline: a peer that never answers the close frame and
// a handler that only waits on its ctx are dropped when Shutdown's ctx ends;
// Shutdown returns context.DeadlineExceeded and the handler ends. A second,
// concurrent Shutdown without a deadline returns once the handler has ended.
func TestServerShutdownDeadline(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	handlerDone := make(chan error, 1)
	ws := &websocket.Server{
		// The close handshake would wait this long for the silent client.
		Options: websocket.AcceptOptions{Options: websocket.Options{CloseTimeout: serverTestTimeout}},
		Handler: func(ctx context.Context, c *websocket.Conn) error {
			<-ctx.Done() // cancelled when the connection closes
			handlerDone <- ctx.Err()
			return ctx.Err()
		},
	}
	_, url := startH1(t, ws)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow() // the client never reads: it never answers the close
	waitFor(t, "the handler to be tracked", func() bool { return ws.Len() == 1 })

	background := make(chan error, 1)
	go func() { background <- ws.Shutdown(context.Background()) }()

	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if err := ws.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	select {
	case <-handlerDone:
	case <-ctx.Done():
		t.Fatal("the handler did not end after a forced shutdown")
	}
	if err := <-background; err != nil {
		t.Errorf("Shutdown without a deadline = %v, want nil once the handler ended", err)
	}
	if n := ws.Len(); n != 0 {
		t.Errorf("Len() = %d after a forced shutdown, want 0", n)
	}
	// A later call finds everything ended.
	if err := ws.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after the end = %v, want nil", err)
	}
}

// TestServerLenAll: Len counts live connections and All lets a server push
// to them (with a nil Handler, which only reads); a client that leaves is no
// longer counted.
func TestServerLenAll(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	ws := &websocket.Server{}
	_, url := startH1(t, ws)
	_, h2URL, h2Client := startH2(t, ws)
	if n := ws.Len(); n != 0 {
		t.Errorf("Len() = %d before any connection", n)
	}

	var clients []*websocket.Conn
	for i := range 3 {
		u, opts := url, (*websocket.DialOptions)(nil)
		if i == 2 {
			u, opts = h2URL, &websocket.DialOptions{HTTPVersion: websocket.HTTP2, HTTPClient: h2Client}
		}
		c, _, err := websocket.Dial(ctx, u, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		clients = append(clients, c)
	}
	waitFor(t, "three tracked connections", func() bool { return ws.Len() == 3 })

	n := 0
	for c := range ws.All() {
		n++
		if err := c.Write(ctx, websocket.MessageText, []byte("broadcast")); err != nil {
			t.Errorf("write to a live connection: %v", err)
		}
	}
	if n != 3 {
		t.Errorf("All yielded %d connections, want 3", n)
	}
	for i, c := range clients {
		msg, err := c.Read(ctx)
		if err != nil || string(msg.Data) != "broadcast" {
			t.Errorf("client %d: read %q, %v; want the broadcast", i, msg.Data, err)
		}
	}
	n = 0
	for range ws.All() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("All after break yielded %d, want 1", n)
	}

	if err := clients[0].Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	waitFor(t, "the closed connection to leave", func() bool { return ws.Len() == 2 })
	if err := clients[2].Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close over HTTP/2: %v", err)
	}
	waitFor(t, "the HTTP/2 connection to leave", func() bool { return ws.Len() == 1 })

	// The last one is closed by Shutdown.
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- ws.Shutdown(ctx) }()
	if end := readUntilEnd(ctx, clients[1]); !errors.Is(end.err, io.EOF) {
		t.Errorf("read during Shutdown: %v, want a normal close", end.err)
	}
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := ws.Len(); n != 0 {
		t.Errorf("Len() = %d after Shutdown", n)
	}
}

// TestServerDrainStopsWithCtx: a drain spread over an hour stops when
// Shutdown's ctx ends: the first connection got its close frame, the others
// are dropped, Shutdown returns the ctx's error and the drain's goroutine
// ends (noLeaks).
func TestServerDrainStopsWithCtx(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	ws := &websocket.Server{DrainWindow: time.Hour}
	_, url := startH1(t, ws)
	var clients []*websocket.Conn
	for range 3 {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		clients = append(clients, c)
	}
	waitFor(t, "three tracked connections", func() bool { return ws.Len() == 3 })
	ends := make([]readEnd, len(clients))
	var readers sync.WaitGroup
	for i, c := range clients {
		readers.Go(func() { ends[i] = readUntilEnd(ctx, c) })
	}

	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if err := ws.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	readers.Wait()
	closed, dropped := 0, 0
	for _, e := range ends {
		var ce *websocket.CloseError
		switch {
		case errors.As(e.err, &ce) && ce.Remote && ce.Code == websocket.StatusGoingAway:
			closed++
		case errors.As(e.err, &ce) && ce.Code == websocket.StatusAbnormalClosure:
			dropped++
		default:
			t.Errorf("read ended with %v, want close 1001 or a dropped connection", e.err)
		}
	}
	t.Logf("%d closed with 1001 before the deadline, %d dropped", closed, dropped)
	if dropped < 2 { // the first close is due at once; the others not for 20 and 40 minutes
		t.Errorf("%d closed and %d dropped, want the two whose turn had not come dropped", closed, dropped)
	}
	if n := ws.Len(); n != 0 {
		t.Errorf("Len() = %d after a forced shutdown, want 0", n)
	}
}
