package chat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/duplexws/duplex/chat"
	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait of a test: nothing here should take longer.
const testTimeout = 10 * time.Second

// startServer serves a chat.Server on a loopback port. At the end of the test
// it shuts the chat server down (which waits for the WebSocket handlers, that
// httptest.Server.Close does not wait for) and closes the HTTP server.
func startServer(t *testing.T, opts chat.Options) (*httptest.Server, *chat.Server) {
	t.Helper()
	s := chat.New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("chat shutdown: %v", err)
		}
		ts.Close()
	})
	return ts, s
}

func wsURL(ts *httptest.Server) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/chat/connect"
}

// dial opens /chat/connect as a page of origin would.
func dial(t *testing.T, ctx context.Context, ts *httptest.Server, origin string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, wsURL(ts), &websocket.DialOptions{
		Header: http.Header{"Origin": {origin}},
	})
	if err != nil {
		t.Fatalf("dial with Origin %q: %v", origin, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func sameOrigin(ts *httptest.Server) string { return ts.URL }

// roundTrip sends msg as a text message and decodes the one reply.
func roundTrip(t *testing.T, ctx context.Context, c *websocket.Conn, msg string) map[string]any {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	reply, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read the reply to %q: %v", msg, err)
	}
	if reply.Type != websocket.MessageText {
		t.Errorf("reply to %q is a %v message, want text", msg, reply.Type)
	}
	var v map[string]any
	if err := json.Unmarshal(reply.Data, &v); err != nil {
		t.Fatalf("reply to %q is not a JSON object: %q: %v", msg, reply.Data, err)
	}
	return v
}

func wantEcho(t *testing.T, ctx context.Context, c *websocket.Conn, text string) {
	t.Helper()
	msg, _ := json.Marshal(map[string]string{"text": text})
	got := roundTrip(t, ctx, c, string(msg))
	if got["text"] != "Echo: "+text || len(got) != 1 {
		t.Errorf("reply to %s = %v, want {\"text\": %q}", msg, got, "Echo: "+text)
	}
}

func wantError(t *testing.T, ctx context.Context, c *websocket.Conn, msg, mention string) {
	t.Helper()
	got := roundTrip(t, ctx, c, msg)
	e, ok := got["error"].(string)
	if !ok || len(got) != 1 {
		t.Fatalf("reply to %q = %v, want {\"error\": ...}", msg, got)
	}
	if !strings.Contains(e, mention) {
		t.Errorf("reply to %q = {\"error\": %q}, want it to mention %q", msg, e, mention)
	}
}

func TestEcho(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ts, _ := startServer(t, chat.Options{})
	c := dial(t, ctx, ts, sameOrigin(ts))

	for _, text := range []string{"hello", "", "<b>not html</b> & \"quotes\"", "héllo wörld ✓", "line\nbreak"} {
		wantEcho(t, ctx, c, text)
	}

	// Many messages sent before any reply is read: each gets its reply, in order.
	for i := range 20 {
		msg, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", i)})
		if err := c.SendText(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		reply, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(map[string]string{"text": "Echo: " + strings.Repeat("x", i)})
		if !bytes.Equal(reply.Data, want) {
			t.Fatalf("reply %d = %s, want %s", i, reply.Data, want)
		}
	}

	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestBadMessagesGetAnErrorAndTheConnectionStaysOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ts, _ := startServer(t, chat.Options{})
	c := dial(t, ctx, ts, sameOrigin(ts))

	cases := []struct {
		name, msg, mention string
	}{
		{"not JSON", "hello", "not valid JSON"},
		{"truncated JSON", `{"text": "hel`, "not valid JSON"},
		{"trailing garbage", `{"text": "a"} x`, "not valid JSON"},
		{"empty message", ``, "not valid JSON"},
		{"no text field", `{"message": "hello"}`, `no "text" field`},
		{"empty object", `{}`, `no "text" field`},
		{"text is a number", `{"text": 42}`, `"text" must be a string, not a number`},
		{"text is null", `{"text": null}`, `"text" must be a string, not null`},
		{"text is an object", `{"text": {"a": 1}}`, `"text" must be a string, not an object`},
		{"text is an array", `{"text": ["a"]}`, `"text" must be a string, not an array`},
		{"text is a boolean", `{"text": true}`, `"text" must be a string, not a boolean`},
		{"not an object", `["text", "hello"]`, "JSON object"},
		{"a bare string", `"hello"`, "JSON object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, ctx, c, tc.msg, tc.mention)
			// The connection is still usable: a valid message is echoed.
			wantEcho(t, ctx, c, "still here after "+tc.name)
		})
	}
}

func TestBinaryMessageIsParsedToo(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ts, _ := startServer(t, chat.Options{})
	c := dial(t, ctx, ts, sameOrigin(ts))

	if err := c.Write(ctx, websocket.MessageBinary, []byte(`{"text": "bin"}`)); err != nil {
		t.Fatal(err)
	}
	reply, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(reply.Data), `{"text":"Echo: bin"}`; got != want {
		t.Errorf("reply = %s, want %s", got, want)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ts, _ := startServer(t, chat.Options{})

	t.Run("exactly 64 KiB is echoed", func(t *testing.T) {
		c := dial(t, ctx, ts, sameOrigin(ts))
		overhead := len(`{"text":""}`)
		wantEcho(t, ctx, c, strings.Repeat("a", chat.ReadLimit-overhead))
	})

	t.Run("64 KiB + 1 closes with 1009", func(t *testing.T) {
		c := dial(t, ctx, ts, sameOrigin(ts))
		overhead := len(`{"text":""}`)
		msg, _ := json.Marshal(map[string]string{"text": strings.Repeat("a", chat.ReadLimit-overhead+1)})
		if len(msg) != chat.ReadLimit+1 {
			t.Fatalf("test message is %d bytes, want %d", len(msg), chat.ReadLimit+1)
		}
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			// The server may close before it has read the whole message.
			t.Logf("write of the oversized message: %v", err)
		}
		_, err := c.Read(ctx)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read after an oversized message: %v, want a *websocket.CloseError", err)
		}
		if ce.Code != websocket.StatusMessageTooBig || !ce.Remote {
			t.Errorf("close = %+v, want code 1009 sent by the server (Remote)", ce)
		}
	})
}

func TestOrigin(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ts, _ := startServer(t, chat.Options{OriginPatterns: []string{"*.trusted.example"}})

	t.Run("same origin is accepted", func(t *testing.T) {
		c := dial(t, ctx, ts, sameOrigin(ts))
		wantEcho(t, ctx, c, "same origin")
	})

	t.Run("allowed pattern is accepted", func(t *testing.T) {
		c := dial(t, ctx, ts, "https://chat.trusted.example")
		wantEcho(t, ctx, c, "trusted origin")
	})

	for _, origin := range []string{"https://evil.example", "http://trusted.example.evil.example", "null"} {
		t.Run("cross origin "+origin+" is refused", func(t *testing.T) {
			c, resp, err := websocket.Dial(ctx, wsURL(ts), &websocket.DialOptions{
				Header: http.Header{"Origin": {origin}},
			})
			if err == nil {
				c.CloseNow()
				t.Fatalf("dial with Origin %q succeeded, want 403", origin)
			}
			var he *websocket.HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("dial with Origin %q: %v, want a *websocket.HandshakeError", origin, err)
			}
			if he.Status != http.StatusForbidden {
				t.Errorf("dial with Origin %q: status %d, want 403", origin, he.Status)
			}
			if resp != nil && resp.StatusCode != http.StatusForbidden {
				t.Errorf("response status %d, want 403", resp.StatusCode)
			}
		})
	}
}

func TestShutdownSendsGoingAway(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	s := chat.New(chat.Options{})
	ts := httptest.NewServer(s)
	defer ts.Close()

	var conns []*websocket.Conn
	for range 3 {
		c := dial(t, ctx, ts, sameOrigin(ts))
		wantEcho(t, ctx, c, "before shutdown") // the handler is running
		conns = append(conns, c)
	}
	if n := s.Connections(); n != 3 {
		t.Errorf("Connections() = %d, want 3", n)
	}

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- s.Shutdown(ctx) }()

	for i, c := range conns {
		_, err := c.Read(ctx)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || !ce.Remote {
			t.Errorf("conn %d: read during shutdown: %v, want close 1001 from the server", i, err)
		}
		if !errors.Is(err, io.EOF) {
			t.Errorf("conn %d: errors.Is(%v, io.EOF) = false, want true for 1001", i, err)
		}
	}
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := s.Connections(); n != 0 {
		t.Errorf("Connections() after Shutdown = %d, want 0", n)
	}

	// After shutdown, new connections are refused.
	_, _, err := websocket.Dial(ctx, wsURL(ts), &websocket.DialOptions{Header: http.Header{"Origin": {ts.URL}}})
	var he *websocket.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Errorf("dial after shutdown: %v, want a 503 handshake error", err)
	}
}

func TestPages(t *testing.T) {
	ts, _ := startServer(t, chat.Options{})
	client := &http.Client{
		Timeout: testTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}

	resp, _ := get("/")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/chat/index" {
		t.Errorf("GET / = %d Location %q, want 302 to /chat/index", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp, body := get("/chat/index?room=lobby")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /chat/index = %d %q, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`id="chat"`, `id="messages"`, `id="presence"`, `id="status"`, `src="room.js"`} {
		if !strings.Contains(body, want) {
			t.Errorf("room page lacks %s", want)
		}
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("room page has no Content-Security-Policy")
	}
	for _, path := range []string{"/chat/room.js", "/chat/duplex.js"} {
		resp, body := get(path)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
			t.Errorf("GET %s = %d %q, want 200 JavaScript", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if strings.Contains(body, "innerHTML") {
			t.Errorf("%s uses innerHTML; messages must be set with textContent", path)
		}
	}

	resp, body = get("/chat/echo")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /chat/echo = %d %q, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`id="chat"`, `disabled`, `id="response"`, `id="status"`, `src="chat.js"`} {
		if !strings.Contains(body, want) {
			t.Errorf("echo page lacks %s", want)
		}
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("echo page has no Content-Security-Policy")
	}

	resp, body = get("/chat/chat.js")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("GET /chat/chat.js = %d %q, want 200 JavaScript", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if strings.Contains(body, "innerHTML") || strings.Contains(body, "innerText") {
		t.Error("chat.js uses innerHTML/innerText; replies must be set with textContent")
	}

	// Revalidation with the ETag.
	req, _ := http.NewRequest("GET", ts.URL+"/chat/chat.js", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp2, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotModified {
		t.Errorf("GET /chat/chat.js with its ETag = %d, want 304", resp2.StatusCode)
	}

	resp, _ = get("/chat/nothing")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /chat/nothing = %d, want 404", resp.StatusCode)
	}

	// A plain GET of the endpoint is not a handshake.
	resp, _ = get("/chat/connect")
	if resp.StatusCode/100 != 4 {
		t.Errorf("plain GET /chat/connect = %d, want a 4xx", resp.StatusCode)
	}
}

// TestKeepalive: with pings on, a connection whose client keeps reading
// survives many ping intervals and still echoes.
func TestKeepalive(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	// Many pings, each with a pong timeout generous enough for a loaded CI machine.
	ts, _ := startServer(t, chat.Options{PingInterval: 10 * time.Millisecond, PongTimeout: testTimeout})
	c := dial(t, ctx, ts, sameOrigin(ts))

	// The client answers pings only while it reads: read in the background.
	replies := make(chan websocket.Message)
	readErr := make(chan error, 1)
	go func() {
		for {
			msg, err := c.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			replies <- msg
		}
	}()

	time.Sleep(20 * 10 * time.Millisecond) // about twenty pings
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"text": "alive"}`)); err != nil {
		t.Fatalf("write after the pings: %v", err)
	}
	select {
	case msg := <-replies:
		if got, want := string(msg.Data), `{"text":"Echo: alive"}`; got != want {
			t.Errorf("reply = %s, want %s", got, want)
		}
	case err := <-readErr:
		t.Fatalf("connection ended during keepalive: %v", err)
	case <-ctx.Done():
		t.Fatal("no reply")
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := <-readErr; !errors.Is(err, websocket.ErrClosed) {
		t.Errorf("reader ended with %v, want a closed connection", err)
	}
}

// TestShutdownDeadline: a client that never answers the close frame is
// dropped when Shutdown's context ends, and Shutdown says so.
func TestShutdownDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	s := chat.New(chat.Options{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	c := dial(t, ctx, ts, sameOrigin(ts))
	wantEcho(t, ctx, c, "then silence") // the client reads nothing from now on

	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	if err := s.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if n := s.Connections(); n != 0 {
		t.Errorf("Connections() after a forced shutdown = %d, want 0", n)
	}
}

// lockedBuffer is a log destination safe for the handlers' goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestShutdownServiceRestart: with ShutdownCode 1012 and a drain window, every
// page gets 1012 "service restart", and the log says the server closed it.
func TestShutdownServiceRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var logs lockedBuffer
	s := chat.New(chat.Options{
		ShutdownCode: websocket.StatusServiceRestart,
		DrainWindow:  100 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ts := httptest.NewServer(s)
	defer ts.Close()

	var conns []*websocket.Conn
	for range 3 {
		c := dial(t, ctx, ts, sameOrigin(ts))
		wantEcho(t, ctx, c, "before the restart")
		conns = append(conns, c)
	}
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- s.Shutdown(ctx) }()
	for i, c := range conns {
		_, err := c.Read(ctx)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusServiceRestart || ce.Reason != "service restart" || !ce.Remote {
			t.Errorf("conn %d: read during shutdown: %v, want close 1012 \"service restart\" from the server", i, err)
		}
	}
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="websocket closed"`); n != 3 {
		t.Errorf("%d 'websocket closed' lines, want 3:\n%s", n, out)
	}
	if n := strings.Count(out, `code=1012 reason="service restart" by=server`); n != 3 {
		t.Errorf("%d closes logged as 1012 by the server, want 3:\n%s", n, out)
	}
}

// TestMaxConnectionsAndObservation: the echo endpoint and the hub share one
// cap; Hooks is asked once per endpoint and sees each one's handshakes;
// Stats counts per endpoint; Ready turns false at Shutdown.
func TestMaxConnectionsAndObservation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var mu sync.Mutex
	accepted := map[string]int{}
	refused := map[string]int{}
	ts, s := startServer(t, chat.Options{
		MaxConnections: 2,
		Hooks: func(endpoint string) websocket.ServerHooks {
			return websocket.ServerHooks{Handshake: func(h websocket.HandshakeInfo) {
				mu.Lock()
				defer mu.Unlock()
				if h.Err == nil {
					accepted[endpoint]++
				} else if errors.Is(h.Err, websocket.ErrConnectionLimit) {
					refused[endpoint]++
				}
			}}
		},
	})
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready while serving: %v", err)
	}
	hubURL := "ws" + strings.TrimPrefix(ts.URL, "http") + "/chat/hub"
	origin := http.Header{"Origin": {sameOrigin(ts)}}
	e := dial(t, ctx, ts, sameOrigin(ts))
	roundTrip(t, ctx, e, `{"text":"hi"}`)
	h, _, err := websocket.Dial(ctx, hubURL, &websocket.DialOptions{Header: origin, Subprotocols: []string{hub.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.CloseNow()
	for _, u := range []string{wsURL(ts), hubURL} {
		_, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Header: origin, Subprotocols: []string{hub.Subprotocol}})
		var he *websocket.HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
			t.Errorf("dial %s with both places taken: %v, want 503", u, err)
		}
	}
	// The hooks and Stats see a handshake once its answer is written, so
	// the client may read its 101 a moment before they do: wait for them,
	// then check that nothing more than one of each came.
	hooksSaw := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return accepted[chat.EndpointEcho] == 1 && accepted[chat.EndpointHub] == 1 && refused[chat.EndpointEcho] == 1 && refused[chat.EndpointHub] == 1
	}
	statsSaw := func() bool {
		st := s.Stats()
		return st.Echo.Open == 1 && st.Echo.MessagesIn == 1 && st.Echo.MessagesOut == 1 && st.Hub.WebSocket.Open == 1
	}
	for deadline := time.Now().Add(testTimeout); !(hooksSaw() && statsSaw()) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !hooksSaw() {
		mu.Lock()
		t.Errorf("hooks saw accepted %v and refused %v, want one of each per endpoint", accepted, refused)
		mu.Unlock()
	}
	if !statsSaw() {
		t.Errorf("Stats = %+v, want one echo connection with a message each way and one hub connection", s.Stats())
	}
	var readers sync.WaitGroup
	for _, c := range []*websocket.Conn{e, h} {
		readers.Go(func() { c.Read(ctx) }) // answers Shutdown's close frame
	}
	defer readers.Wait()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err == nil {
		t.Error("Ready after Shutdown: nil, want an error")
	}
}
