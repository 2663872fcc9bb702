package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// scrape is one GET /metrics, parsed from the text format.
type scrape map[string]*dto.MetricFamily

func getMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the sample of family name whose labels are the given
// name-value pairs (and no others): a counter's or gauge's value, a
// histogram's count. A sample that is absent (a vector not yet used) is 0.
func (s scrape) value(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return 0
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.Metric {
		if len(m.Label) != len(want) {
			continue
		}
		for _, l := range m.Label {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return 0
}

// hubClient speaks the hub protocol over /chat/hub, one call at a time.
type hubClient struct {
	c    *websocket.Conn
	id   uint64
	pubs int // publications received
}

func dialHubClient(t *testing.T, ctx context.Context, addr, name string, version websocket.HTTPVersion) *hubClient {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/chat/hub", &websocket.DialOptions{
		Header:       http.Header{"Origin": {"http://" + addr}},
		Subprotocols: []string{hub.Subprotocol},
		HTTPVersion:  version,
	})
	if err != nil {
		t.Fatalf("dial /chat/hub: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	h := &hubClient{c: c}
	h.call(t, ctx, map[string]any{"op": "connect", "data": map[string]string{"name": name}})
	return h
}

// call sends a command and reads until its reply, counting the
// publications that come before it.
func (h *hubClient) call(t *testing.T, ctx context.Context, cmd map[string]any) {
	t.Helper()
	h.id++
	cmd["id"] = h.id
	b, _ := json.Marshal(cmd)
	if err := h.c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	for {
		var m struct {
			ID    uint64          `json:"id"`
			Push  string          `json:"push"`
			Error json.RawMessage `json:"error"`
		}
		h.read(t, ctx, &m)
		switch {
		case m.Push == "pub":
			h.pubs++
		case m.ID == h.id && m.Error != nil:
			t.Fatalf("%s: error %s", b, m.Error)
		case m.ID == h.id:
			return
		}
	}
}

func (h *hubClient) read(t *testing.T, ctx context.Context, v any) {
	t.Helper()
	msg, err := h.c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		t.Fatalf("%s: %v", msg.Data, err)
	}
}

// waitPubs reads until n publications have arrived.
func (h *hubClient) waitPubs(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for h.pubs < n {
		var m struct {
			Push string `json:"push"`
		}
		h.read(t, ctx, &m)
		if m.Push == "pub" {
			h.pubs++
		}
	}
}

// waitMetrics scrapes until cond holds.
func waitMetrics(t *testing.T, addr, what string, cond func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		s := getMetrics(t, addr)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetrics drives traffic through both endpoints and checks that every
// metric moved by exactly what was done: echoes over /chat/connect (whose
// wire bytes are computed frame by frame), a handshake refused for its
// origin, a close with code 4000, and hub clients over HTTP/1.1 and HTTP/2
// (h2c) that subscribe and publish, whose bytes the server must count as the
// clients count them.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-h2c"}, nil)
	before := getMetrics(t, srv.addr)
	for _, name := range []string{"go_goroutines", "process_open_fds", "duplex_websocket_connections", "duplex_hub_rooms"} {
		if before[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}

	// The echo endpoint: three messages, then a close with 4000.
	echoClient, _, err := websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{
		Header:  http.Header{"Origin": {"http://" + srv.addr}},
		Options: websocket.Options{Compression: &websocket.CompressionOptions{Disabled: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer echoClient.CloseNow()
	var up, down uint64 // wire bytes: a client frame has 4 bytes of mask more
	for _, text := range []string{"one", "two", "three"} {
		echo(t, ctx, echoClient, text)
		msg, _ := json.Marshal(map[string]string{"text": text})
		reply, _ := json.Marshal(map[string]string{"text": "Echo: " + text})
		up += 2 + 4 + uint64(len(msg))
		down += 2 + uint64(len(reply))
	}
	if err := echoClient.Close(4000, "done"); err != nil {
		t.Fatal(err)
	}
	up += 2 + 4 + 2 + 4 // close 4000 "done"
	down += 2 + 2       // its echo: the code alone
	if st := echoClient.Stats(); st.BytesOut != up || st.BytesIn != down {
		t.Errorf("the echo client counted %d bytes out and %d in, the test %d and %d", st.BytesOut, st.BytesIn, up, down)
	}

	// A refused handshake.
	_, _, err = websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{
		Header: http.Header{"Origin": {"https://evil.example"}},
	})
	var he *websocket.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("dial from another origin: %v, want 403", err)
	}

	// The hub: alice (HTTP/1.1) and bob (HTTP/2) in one room; alice
	// publishes twice.
	alice := dialHubClient(t, ctx, srv.addr, "alice", websocket.HTTP1)
	bob := dialHubClient(t, ctx, srv.addr, "bob", websocket.HTTP2)
	alice.call(t, ctx, map[string]any{"op": "subscribe", "room": "metrics"})
	bob.call(t, ctx, map[string]any{"op": "subscribe", "room": "metrics"})
	alice.call(t, ctx, map[string]any{"op": "publish", "room": "metrics", "data": "first"})
	alice.call(t, ctx, map[string]any{"op": "publish", "room": "metrics", "data": "second"})
	alice.waitPubs(t, ctx, 2)
	bob.waitPubs(t, ctx, 2)
	during := getMetrics(t, srv.addr)
	for _, c := range []struct {
		name string
		want float64
	}{{"duplex_hub_rooms", 1}, {"duplex_hub_subscriptions", 2}} {
		if got := during.value(c.name); got != c.want {
			t.Errorf("%s = %v while alice and bob are in the room, want %v", c.name, got, c.want)
		}
	}
	if got := during.value("duplex_websocket_connections", "endpoint", "hub"); got != 2 {
		t.Errorf("hub connections open = %v, want 2", got)
	}
	for _, c := range []*hubClient{alice, bob} {
		if err := c.c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	}
	var hubUp, hubDown uint64
	for _, c := range []*hubClient{alice, bob} {
		st := c.c.Stats()
		hubUp += st.BytesOut
		hubDown += st.BytesIn
	}

	// The open-connections gauge is waited for as well as the counters:
	// one scrape reads its collectors concurrently, so a connection that
	// ends during it can be counted as ended by the disconnect counter and
	// still open by the gauge, read a moment before.
	after := waitMetrics(t, srv.addr, "every connection to end", func(s scrape) bool {
		return s.value("duplex_websocket_disconnects_total", "endpoint", "hub", "by", "client")-
			before.value("duplex_websocket_disconnects_total", "endpoint", "hub", "by", "client") == 2 &&
			s.value("duplex_websocket_disconnects_total", "endpoint", "echo", "by", "client")-
				before.value("duplex_websocket_disconnects_total", "endpoint", "echo", "by", "client") == 1 &&
			s.value("duplex_websocket_connections", "endpoint", "hub") == 0 &&
			s.value("duplex_websocket_connections", "endpoint", "echo") == 0
	})
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"duplex_websocket_handshakes_total", []string{"endpoint", "echo", "transport", "http1", "result", "accepted"}, 1},
		{"duplex_websocket_handshakes_total", []string{"endpoint", "echo", "transport", "http1", "result", "rejected"}, 1},
		{"duplex_websocket_handshakes_total", []string{"endpoint", "hub", "transport", "http1", "result", "accepted"}, 1},
		{"duplex_websocket_handshakes_total", []string{"endpoint", "hub", "transport", "http2", "result", "accepted"}, 1},
		{"duplex_websocket_handshake_duration_seconds", []string{"endpoint", "echo", "transport", "http1"}, 1},
		{"duplex_websocket_handshake_duration_seconds", []string{"endpoint", "hub", "transport", "http1"}, 1},
		{"duplex_websocket_handshake_duration_seconds", []string{"endpoint", "hub", "transport", "http2"}, 1},
		{"duplex_websocket_messages_received_total", []string{"endpoint", "echo"}, 3},
		{"duplex_websocket_messages_sent_total", []string{"endpoint", "echo"}, 3},
		{"duplex_websocket_received_bytes_total", []string{"endpoint", "echo"}, float64(up)},
		{"duplex_websocket_sent_bytes_total", []string{"endpoint", "echo"}, float64(down)},
		{"duplex_websocket_close_codes_received_total", []string{"endpoint", "echo", "code", "4000"}, 1},
		{"duplex_websocket_close_codes_sent_total", []string{"endpoint", "echo", "code", "4000"}, 1},
		{"duplex_websocket_disconnects_total", []string{"endpoint", "echo", "by", "client"}, 1},
		// alice: connect, subscribe, two publishes; bob: connect, subscribe.
		{"duplex_websocket_messages_received_total", []string{"endpoint", "hub"}, 6},
		// alice: four replies, two publications; bob: two and two.
		{"duplex_websocket_messages_sent_total", []string{"endpoint", "hub"}, 10},
		{"duplex_websocket_received_bytes_total", []string{"endpoint", "hub"}, float64(hubUp)},
		{"duplex_websocket_sent_bytes_total", []string{"endpoint", "hub"}, float64(hubDown)},
		{"duplex_websocket_close_codes_received_total", []string{"endpoint", "hub", "code", "1000"}, 2},
		{"duplex_websocket_close_codes_sent_total", []string{"endpoint", "hub", "code", "1000"}, 2},
		{"duplex_websocket_disconnects_total", []string{"endpoint", "hub", "by", "client"}, 2},
		{"duplex_hub_publications_total", nil, 2},
		{"duplex_hub_broker_publish_duration_seconds", []string{"result", "ok"}, 2},
		{"duplex_hub_slow_consumer_closes_total", nil, 0},
	}
	for _, c := range checks {
		if got := after.value(c.name, c.labels...) - before.value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"duplex_websocket_connections", []string{"endpoint", "echo"}},
		{"duplex_websocket_connections", []string{"endpoint", "hub"}},
		{"duplex_hub_rooms", nil},
		{"duplex_hub_subscriptions", nil},
		{"duplex_hub_send_queue_bytes", nil},
		{"duplex_hub_send_queue_messages", nil},
	} {
		if got := after.value(c.name, c.labels...); got != 0 {
			t.Errorf("%s%v = %v once everyone left, want 0", c.name, c.labels, got)
		}
	}
	if t.Failed() {
		resp, err := http.Get("http://" + srv.addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("/metrics:\n%s", grepLines(string(body), "duplex_"))
		}
	}
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReadyzDuringDrain: /readyz answers 200 while the server serves and
// 503 from the moment the shutdown begins, before the first WebSocket is
// sent its close frame (checked from inside the shutdown path, before the
// drain starts); during the drain the listener still answers, /readyz
// with 503 and a new WebSocket with 503 and Retry-After.
func TestReadyzDuringDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-drain", "3s"}, nil)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + srv.addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	if code, body := readyz(); code != http.StatusOK || body != "ready" {
		t.Fatalf("GET /readyz while serving = %d %q, want 200 ready", code, body)
	}

	const n = 3
	closed := make(chan time.Time, n)
	for range n {
		c := dialChat(t, ctx, srv.addr)
		echo(t, ctx, c, "before the drain")
		go func() {
			_, err := c.Read(ctx)
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
				t.Errorf("read during the drain: %v, want close 1001", err)
			}
			closed <- time.Now()
		}()
	}

	type answer struct {
		code int
		body string
	}
	beforeDrain := make(chan answer, 1)
	testHookBeforeDrain = func() {
		code, body := readyz()
		beforeDrain <- answer{code, body}
	}
	t.Cleanup(func() { testHookBeforeDrain = nil })
	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()

	a := <-beforeDrain
	if a.code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz in the shutdown path, before the drain = %d %q, want 503", a.code, a.body)
	}
	first := <-closed
	code, body := readyz()
	if code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz after the first close frame arrived = %d %q, want 503", code, body)
	}
	_, resp, err := websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{
		Header: http.Header{"Origin": {"http://" + srv.addr}},
	})
	var he *websocket.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("dial during the drain: %v, want 503 with Retry-After", err)
	}
	t.Logf("first close frame at %v; /readyz said %d (%q) then", first.Format("15:04:05.000"), code, body)
	if err := <-stopped; err != nil {
		t.Errorf("run: %v", err)
	}
	for range n - 1 {
		<-closed
	}
}

// TestConnectionCapAndHeaderLimit: with -max-connections 2, the two
// endpoints share the cap: a third WebSocket is refused before the upgrade
// with 503, Retry-After and a message, over HTTP/1.1 and HTTP/2 (h2c), and
// counted as result="limit"; one that ends frees its place. A 64 KB request
// header on the WebSocket endpoint gets 431.
func TestConnectionCapAndHeaderLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-h2c", "-max-connections", "2"}, nil)
	if len(srv.logs.linesWith("msg=listening", "max_connections=2")) != 1 {
		t.Errorf("the listening line does not give the cap:\n%s", srv.logs)
	}
	origin := http.Header{"Origin": {"http://" + srv.addr}}
	echoConn := dialChat(t, ctx, srv.addr)
	hubConn := dialHubClient(t, ctx, srv.addr, "carol", websocket.HTTP1)

	for _, d := range []struct {
		path    string
		version websocket.HTTPVersion
	}{{"/chat/connect", websocket.HTTP1}, {"/chat/connect", websocket.HTTP2}, {"/chat/hub", websocket.HTTP1}} {
		_, resp, err := websocket.Dial(ctx, "ws://"+srv.addr+d.path, &websocket.DialOptions{
			Header: origin, HTTPVersion: d.version, Subprotocols: []string{hub.Subprotocol},
		})
		var he *websocket.HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
			t.Fatalf("dial %s over %v at the cap: %v, want 503", d.path, d.version, err)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("dial %s over %v: 503 without Retry-After", d.path, d.version)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "limit of WebSocket connections") {
			t.Errorf("dial %s over %v: 503 body %q does not say why", d.path, d.version, body)
		}
	}
	m := getMetrics(t, srv.addr)
	if got := m.value("duplex_websocket_handshakes_total", "endpoint", "echo", "transport", "http1", "result", "limit") +
		m.value("duplex_websocket_handshakes_total", "endpoint", "echo", "transport", "http2", "result", "limit") +
		m.value("duplex_websocket_handshakes_total", "endpoint", "hub", "transport", "http1", "result", "limit"); got != 3 {
		t.Errorf("%v handshakes counted with result=limit, want 3", got)
	}

	echoConn.Close(websocket.StatusNormalClosure, "")
	waitMetrics(t, srv.addr, "the echo connection to end", func(s scrape) bool {
		return s.value("duplex_websocket_connections", "endpoint", "echo") == 0
	})
	c := dialChat(t, ctx, srv.addr)
	echo(t, ctx, c, "a place was free")
	hubConn.c.Close(websocket.StatusNormalClosure, "")

	// 64 KB of header on the WebSocket endpoint, over a raw connection: the
	// server stops reading at its limit, answers and hangs up.
	nc, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testTimeout))
	req := fmt.Sprintf("GET /chat/connect HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: big=%s\r\n\r\n",
		srv.addr, strings.Repeat("x", 64<<10))
	go nc.Write([]byte(req)) // may fail once the server hangs up: the answer is what counts
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("reading the answer to a 64 KB header: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 64 KB header on /chat/connect got %s, want 431", resp.Status)
	}
}

// TestEventStreamAtCap: an event stream holds a place under
// -max-connections as a WebSocket does, shows in duplex_hub_event_streams,
// and frees its place when it ends.
func TestEventStreamAtCap(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-broker", "memory", "-max-connections", "1"}, nil)
	streamCtx, endStream := context.WithCancel(ctx)
	defer endStream()
	req, _ := http.NewRequestWithContext(streamCtx, "GET", "http://"+srv.addr+"/chat/rooms/lobby/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if got := getMetrics(t, srv.addr).value("duplex_hub_event_streams"); got != 1 {
		t.Errorf("duplex_hub_event_streams = %v with one stream open", got)
	}
	_, r, err := websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{Header: originHeader(srv.addr)})
	if err == nil || r == nil || r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("WebSocket beside an event stream at -max-connections 1: %v, want 503 with Retry-After", err)
	}
	endStream()
	waitMetrics(t, srv.addr, "the stream to end", func(s scrape) bool { return s.value("duplex_hub_event_streams") == 0 })
	echo(t, ctx, dialChat(t, ctx, srv.addr), "a place was free")
}
