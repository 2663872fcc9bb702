package websocket_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// hookLog collects what a Server's hooks report.
type hookLog struct {
	mu         sync.Mutex
	handshakes []websocket.HandshakeInfo
	ends       []websocket.EndInfo
	ended      chan websocket.EndInfo
}

func newHookLog() *hookLog { return &hookLog{ended: make(chan websocket.EndInfo, 100)} }

func (l *hookLog) hooks() websocket.ServerHooks {
	return websocket.ServerHooks{
		Handshake: func(h websocket.HandshakeInfo) {
			h.Request = nil // hooks must not keep it
			l.mu.Lock()
			l.handshakes = append(l.handshakes, h)
			l.mu.Unlock()
		},
		End: func(e websocket.EndInfo) {
			e.Request = nil
			l.mu.Lock()
			l.ends = append(l.ends, e)
			l.mu.Unlock()
			l.ended <- e
		},
	}
}

func (l *hookLog) handshakeList() []websocket.HandshakeInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]websocket.HandshakeInfo(nil), l.handshakes...)
}

// TestConnStatsScripted runs a scripted exchange over HTTP/1.1 and HTTP/2
// and checks every counter of both ends, to the byte, and what the hooks and
// Server.Stats report. The wire bytes of each step, client to server (masked:
// 4 more header bytes) and back:
//
//	text "hello"                       11 (2+4+5)              7 (2+5)
//	binary, 200 bytes                 208 (2+2+4+200)        204 (2+2+200)
//	Writer: one 40960-byte frame,   40974 (8+40960, 6)     40964 (4+40960, echoed by Write)
//	  then an empty final frame
//	ping (8-byte payload), pong        14 (2+4+8)             10 (2+8)
//	close 4000 "bye", its echo         11 (2+4+2+3)            4 (2+2, code only)
//	                                41218                  41189
func TestConnStatsScripted(t *testing.T) {
	const wantUp, wantDown = 41218, 41189
	for _, h2 := range []bool{false, true} {
		name := "HTTP1"
		if h2 {
			name = "HTTP2"
		}
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
			defer cancel()
			log := newHookLog()
			ws := &websocket.Server{
				Options: websocket.AcceptOptions{Options: websocket.Options{Compression: &websocket.CompressionOptions{Disabled: true}}},
				Hooks:   log.hooks(),
				Handler: echoMessages,
			}
			var url string
			var opts *websocket.DialOptions
			if h2 {
				var client *http.Client
				_, url, client = startH2(t, ws)
				opts = &websocket.DialOptions{HTTPVersion: websocket.HTTP2, HTTPClient: client}
			} else {
				_, url = startH1(t, ws)
			}
			c, _, err := websocket.Dial(ctx, url, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			roundTrip := func(typ websocket.MessageType, p []byte) {
				t.Helper()
				if err := c.Write(ctx, typ, p); err != nil {
					t.Fatal(err)
				}
				if msg, err := c.Read(ctx); err != nil || len(msg.Data) != len(p) {
					t.Fatalf("echo: %d bytes, %v; want %d bytes", len(msg.Data), err, len(p))
				}
			}
			roundTrip(websocket.MessageText, []byte("hello"))
			roundTrip(websocket.MessageBinary, make([]byte, 200))
			w, err := c.Writer(ctx, websocket.MessageBinary)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(make([]byte, 40960)); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if msg, err := c.Read(ctx); err != nil || len(msg.Data) != 40960 {
				t.Fatalf("echo of the streamed message: %d bytes, %v", len(msg.Data), err)
			}
			// The pong is read by a Read, which the ping's end then cancels.
			pctx, pcancel := context.WithCancel(ctx)
			pingErr := make(chan error, 1)
			go func() { pingErr <- c.Ping(ctx); pcancel() }()
			if _, err := c.Read(pctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("read while pinging: %v, want the cancellation", err)
			}
			if err := <-pingErr; err != nil {
				t.Fatalf("ping: %v", err)
			}

			if st := ws.Stats(); st.Open != 1 || st.Ended != 0 || st.MessagesIn != 3 || st.MessagesOut != 3 {
				t.Errorf("Server.Stats while open = %+v, want 1 open and 3 messages each way", st)
			}
			if err := c.Close(4000, "bye"); err != nil {
				t.Fatalf("close: %v", err)
			}
			end := <-log.ended

			wantClient := websocket.ConnStats{MessagesIn: 3, MessagesOut: 3, BytesIn: wantDown, BytesOut: wantUp,
				CloseSent: 4000, CloseReceived: 4000, ClosedBy: websocket.ClosedByLocal}
			if got := c.Stats(); got != wantClient {
				t.Errorf("client Stats = %+v\nwant            %+v", got, wantClient)
			}
			wantServer := websocket.ConnStats{MessagesIn: 3, MessagesOut: 3, BytesIn: wantUp, BytesOut: wantDown,
				CloseSent: 4000, CloseReceived: 4000, ClosedBy: websocket.ClosedByPeer}
			if end.Stats != wantServer {
				t.Errorf("server Stats at the end = %+v\nwant                     %+v", end.Stats, wantServer)
			}
			wantVersion := websocket.HTTP1
			if h2 {
				wantVersion = websocket.HTTP2
			}
			if end.HTTPVersion != wantVersion || end.Duration <= 0 {
				t.Errorf("EndInfo = %+v, want HTTPVersion %v and a duration", end, wantVersion)
			}
			wantTotals := websocket.ServerStats{Open: 0, Ended: 1, MessagesIn: 3, MessagesOut: 3, BytesIn: wantUp, BytesOut: wantDown}
			if st := ws.Stats(); st != wantTotals {
				t.Errorf("Server.Stats after the end = %+v\nwant                      %+v", st, wantTotals)
			}
			hs := log.handshakeList()
			wantStatus := http.StatusSwitchingProtocols
			if h2 {
				wantStatus = http.StatusOK
			}
			if len(hs) != 1 || hs[0].Err != nil || hs[0].Status != wantStatus || hs[0].HTTPVersion != wantVersion || hs[0].Duration <= 0 {
				t.Errorf("handshakes = %+v, want one accepted with status %d over %v", hs, wantStatus, wantVersion)
			}
		})
	}
}

// TestConnStatsCloseCodes checks who closed and the codes recorded when the
// server closes (a protocol violation by the peer, answered with 1002) and
// when the connection is lost without a close frame.
func TestConnStatsCloseCodes(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	log := newHookLog()
	ws := &websocket.Server{Hooks: log.hooks(), Handler: func(ctx context.Context, c *websocket.Conn) error {
		if _, err := c.Read(ctx); err != nil {
			return err
		}
		return &websocket.CloseError{Code: 4321, Reason: "the server says so"}
	}}
	_, url := startH1(t, ws)

	// The server closes: 4321 sent, echoed by the client.
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("go")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx); err == nil {
		t.Fatal("read: no close")
	}
	end := <-log.ended
	if st := end.Stats; st.CloseSent != 4321 || st.CloseReceived != 4321 || st.ClosedBy != websocket.ClosedByLocal {
		t.Errorf("server closed: %+v, want 4321 sent and echoed, closed by local", st)
	}
	if st := c.Stats(); st.CloseSent != 4321 || st.CloseReceived != 4321 || st.ClosedBy != websocket.ClosedByPeer {
		t.Errorf("client of a server close: %+v, want 4321 received and echoed, closed by peer", st)
	}

	// The connection is lost: no close frame either way.
	c, _, err = websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	end = <-log.ended
	if st := end.Stats; st.CloseReceived != 0 || st.ClosedBy != websocket.ClosedByNone {
		t.Errorf("lost connection: %+v, want nothing received and closed by none", st)
	}
	if got := websocket.ClosedByNone.String() + websocket.ClosedByLocal.String() + websocket.ClosedByPeer.String(); got != "nonelocalpeer" {
		t.Errorf("ClosedBy names: %q", got)
	}
}

// TestServerMaxConnections: at the limit a WebSocket is refused before the
// upgrade, over HTTP/1.1 and HTTP/2, with 503, Retry-After and a message;
// the hooks see ErrConnectionLimit; a failed handshake gives its place back,
// and so does a connection that ends.
func TestServerMaxConnections(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	log := newHookLog()
	ws := &websocket.Server{MaxConnections: 2, Hooks: log.hooks()} // reads until the client closes
	ts1, url := startH1(t, ws)
	_, h2URL, h2Client := startH2(t, ws)
	h2Opts := &websocket.DialOptions{HTTPVersion: websocket.HTTP2, HTTPClient: h2Client}

	// A request that is no handshake takes a place only while it is answered.
	resp, err := http.Get(ts1.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET without an upgrade: %d, want 400", resp.StatusCode)
	}

	a, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseNow()
	b, _, err := websocket.Dial(ctx, h2URL, h2Opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.CloseNow()

	for _, d := range []struct {
		name string
		url  string
		opts *websocket.DialOptions
	}{{"HTTP/1.1", url, nil}, {"HTTP/2", h2URL, h2Opts}} {
		_, resp, err := websocket.Dial(ctx, d.url, d.opts)
		wantLimitRefusal(t, d.name, resp, err)
	}
	refused := 0
	for _, h := range log.handshakeList() {
		if h.Err != nil && h.Status == http.StatusServiceUnavailable {
			refused++
			if !errors.Is(h.Err, websocket.ErrConnectionLimit) {
				t.Errorf("hook: refusal %v does not match ErrConnectionLimit", h.Err)
			}
		}
	}
	if refused != 2 {
		t.Errorf("the hook saw %d refusals at the limit, want 2", refused)
	}

	// One ends: its place is free again.
	if err := a.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	<-log.ended
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial after a connection ended: %v", err)
	}
	defer c.CloseNow()
	b.Close(websocket.StatusNormalClosure, "")
	c.Close(websocket.StatusNormalClosure, "")
	<-log.ended
	<-log.ended
}

func wantLimitRefusal(t *testing.T, name string, resp *http.Response, err error) {
	t.Helper()
	var he *websocket.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("%s: dial at the limit: %v, want a 503 handshake error", name, err)
	}
	if resp == nil {
		t.Fatalf("%s: no response", name)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("%s: 503 without Retry-After", name)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "limit") {
		t.Errorf("%s: 503 body %q does not say that the server is at its limit", name, body)
	}
}

// TestServerMaxConnectionsBurst: many handshakes at once against a small
// limit, over HTTP/1.1 and HTTP/2: exactly the limit's worth is accepted,
// the rest refused with 503, and never does a handler run beyond the limit:
// places are taken before the upgrade, so no connection is upgraded and then
// found over the limit.
func TestServerMaxConnectionsBurst(t *testing.T) {
	const limit, dials = 5, 40
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	var running, most atomic.Int64
	ws := &websocket.Server{MaxConnections: limit, Handler: func(ctx context.Context, c *websocket.Conn) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		for {
			if _, err := c.Read(ctx); err != nil {
				return err
			}
		}
	}}
	_, url := startH1(t, ws)
	_, h2URL, h2Client := startH2(t, ws)

	var accepted, refused atomic.Int64
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []*websocket.Conn
	for i := range dials {
		conns.Go(func() {
			u, opts := url, (*websocket.DialOptions)(nil)
			if i%2 == 1 {
				u, opts = h2URL, &websocket.DialOptions{HTTPVersion: websocket.HTTP2, HTTPClient: h2Client}
			}
			c, _, err := websocket.Dial(ctx, u, opts)
			var he *websocket.HandshakeError
			switch {
			case err == nil:
				accepted.Add(1)
				mu.Lock()
				open = append(open, c)
				mu.Unlock()
			case errors.As(err, &he) && he.Status == http.StatusServiceUnavailable:
				refused.Add(1)
			default:
				t.Errorf("dial %d: %v", i, err)
			}
		})
	}
	conns.Wait()
	if accepted.Load() != limit || refused.Load() != dials-limit {
		t.Errorf("%d accepted and %d refused, want %d and %d", accepted.Load(), refused.Load(), limit, dials-limit)
	}
	for _, c := range open {
		c.Close(websocket.StatusNormalClosure, "")
	}
	waitFor(t, "the connections to end", func() bool { return ws.Stats().Open == 0 })
	if m := most.Load(); m > limit {
		t.Errorf("%d handlers ran at once, over the limit of %d", m, limit)
	}
}

// TestServerSharedConnLimit: two Servers with one ConnLimit hold at most its
// Max together.
func TestServerSharedConnLimit(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	limit := &websocket.ConnLimit{Max: 2}
	a := &websocket.Server{Limit: limit}
	b := &websocket.Server{Limit: limit}
	mux := http.NewServeMux()
	mux.Handle("/a", a)
	mux.Handle("/b", b)
	_, url := startH1(t, mux)

	ca, _, err := websocket.Dial(ctx, url+"/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.CloseNow()
	cb, _, err := websocket.Dial(ctx, url+"/b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.CloseNow()
	for _, p := range []string{"/a", "/b"} {
		_, resp, err := websocket.Dial(ctx, url+p, nil)
		wantLimitRefusal(t, p, resp, err)
	}
	if n := limit.Len(); n != 2 {
		t.Errorf("ConnLimit.Len() = %d, want 2", n)
	}
	ca.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the place to be free", func() bool { return limit.Len() == 1 })
	cb2, _, err := websocket.Dial(ctx, url+"/b", nil)
	if err != nil {
		t.Fatalf("dial after one ended: %v", err)
	}
	cb2.Close(websocket.StatusNormalClosure, "")
	cb.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "every place to be free", func() bool { return limit.Len() == 0 })
}

// TestServerStatsNeverGoBack scrapes Stats in a loop while connections come,
// talk and go: no total ever decreases, and at the end they add up exactly.
func TestServerStatsNeverGoBack(t *testing.T) {
	const clients, messages = 20, 10
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	ws := &websocket.Server{
		Options: websocket.AcceptOptions{Options: websocket.Options{Compression: &websocket.CompressionOptions{Disabled: true}}},
		Handler: echoMessages,
	}
	_, url := startH1(t, ws)
	stop := make(chan struct{})
	scraped := make(chan error, 1)
	go func() {
		var last websocket.ServerStats
		for {
			st := ws.Stats()
			if st.Ended < last.Ended || st.MessagesIn < last.MessagesIn || st.MessagesOut < last.MessagesOut ||
				st.BytesIn < last.BytesIn || st.BytesOut < last.BytesOut {
				scraped <- errors.New("totals went back")
				return
			}
			last = st
			select {
			case <-stop:
				scraped <- nil
				return
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			c, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.CloseNow()
			for range messages {
				if err := c.Write(ctx, websocket.MessageText, []byte("0123456789")); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Read(ctx); err != nil {
					t.Error(err)
					return
				}
			}
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
	waitFor(t, "every connection to end", func() bool { return ws.Stats().Ended == clients })
	close(stop)
	if err := <-scraped; err != nil {
		t.Error(err)
	}
	// Each message: 16 bytes in (2+4+10), 12 out (2+10); each close: 8 in
	// (2+4+2, code 1000), 4 out (the echo).
	want := websocket.ServerStats{Ended: clients, MessagesIn: clients * messages, MessagesOut: clients * messages,
		BytesIn: clients * (messages*16 + 8), BytesOut: clients * (messages*12 + 4)}
	if st := ws.Stats(); st != want {
		t.Errorf("Stats = %+v\nwant    %+v", st, want)
	}
}
