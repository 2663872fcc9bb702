package hub

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

type sseEvent struct {
	event, id, data string
}

// readEvents reads n events from an event stream.
func readEvents(t *testing.T, br *bufio.Reader, n int) []sseEvent {
	t.Helper()
	var out []sseEvent
	var ev sseEvent
	for len(out) < n {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream after %d events: %v", len(out), err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.data != "" {
				out = append(out, ev)
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.event = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		}
	}
	return out
}

func openStream(t *testing.T, ctx context.Context, url, lastID string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	return resp, bufio.NewReader(resp.Body)
}

// An event stream resumes from Last-Event-ID exactly as a WebSocket
// subscriber recovers, and a client cut off right after the subscribed
// event (before the caught-up publications) loses nothing by resuming from
// that event's id.
func TestEventStreamResumes(t *testing.T) {
	h := New(Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeEvents(w, r, "s")
	}))
	defer srv.Close()
	defer h.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var first Position
	for i := 1; i <= 3; i++ {
		p, err := h.Publish(ctx, "s", json.RawMessage(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			first = p
		}
	}
	start := Position{Epoch: first.Epoch}.String() // before the first publication

	// Cut off right after the subscribed event.
	resp, br := openStream(t, ctx, srv.URL, start)
	evs := readEvents(t, br, 1)
	resp.Body.Close()
	if evs[0].event != "subscribed" || evs[0].id != start {
		t.Fatalf("first event %+v, want subscribed with id %s", evs[0], start)
	}
	resp, br = openStream(t, ctx, srv.URL, evs[0].id)
	evs = readEvents(t, br, 4)
	if !strings.Contains(evs[0].data, `"recovered":true`) {
		t.Fatalf("resumed stream starts with %+v, want recovered", evs[0])
	}
	for i, ev := range evs[1:] {
		want := Position{Offset: uint64(i + 1), Epoch: first.Epoch}.String()
		if ev.id != want || !strings.Contains(ev.data, fmt.Sprintf(`"data":%d`, i+1)) {
			t.Fatalf("event %d = %+v, want id %s", i, ev, want)
		}
	}
	// Live, then cut, publish more, resume from the last id.
	h.Publish(ctx, "s", json.RawMessage("4"))
	live := readEvents(t, br, 1)[0]
	resp.Body.Close()
	h.Publish(ctx, "s", json.RawMessage("5"))
	h.Publish(ctx, "s", json.RawMessage("6"))
	resp, br = openStream(t, ctx, srv.URL, live.id)
	evs = readEvents(t, br, 3)
	resp.Body.Close()
	if !strings.Contains(evs[0].data, `"recovered":true`) || !strings.Contains(evs[1].data, `"data":5`) || !strings.Contains(evs[2].data, `"data":6`) {
		t.Fatalf("after %s: %+v, want recovered, 5, 6", live.id, evs)
	}
	// An id from another epoch: not recovered, nothing old.
	resp, br = openStream(t, ctx, srv.URL, "elsewhere-2")
	evs = readEvents(t, br, 1)
	resp.Body.Close()
	if !strings.Contains(evs[0].data, `"recovered":false`) {
		t.Fatalf("unknown epoch: %+v, want recovered false", evs[0])
	}
	// A malformed id is a bad request.
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	req.Header.Set("Last-Event-ID", "nonsense")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed Last-Event-ID: %s, want 400", r2.Status)
	}
}

// TestEventStreamCountsAsConnection: an event stream takes a place under
// MaxConnections as a WebSocket does (one more stream or WebSocket gets
// 503), shows in Stats.EventStreams, and what waits in its buffer for a
// client that does not read shows in QueuedBytes and QueuedMessages, which
// go back to zero once the stream has ended as a slow consumer, freeing its
// place.
func TestEventStreamCountsAsConnection(t *testing.T) {
	const queueBytes = 64 << 10
	h := New(Options{MaxConnections: 1, QueueBytes: queueBytes})
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) { h.ServeEvents(w, r, "q") })
	mux.Handle("/hub", h)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		c.(*net.TCPConn).SetWriteBuffer(16 << 10) // see startHubSendBuffer
		return ctx
	}
	srv.Start()
	defer srv.Close()
	defer h.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(8 << 10)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if n := h.Stats().EventStreams; n != 1 {
		t.Errorf("Stats.EventStreams = %d with one stream open", n)
	}

	// The stream holds the only place.
	if _, r, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/hub", &websocket.DialOptions{
		Subprotocols: []string{Subprotocol}}); err == nil || r == nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("WebSocket beside the stream at MaxConnections 1: %v, want 503", err)
	}
	second, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" {
		t.Errorf("second stream at MaxConnections 1: %s, Retry-After %q; want 503 with Retry-After", second.Status, second.Header.Get("Retry-After"))
	}

	// The client does not read: publications pile up in the stream's buffer.
	most, mostMsgs := publishUntilSlowConsumer(t, ctx, h, "q", 20000, func(st Stats) {
		// One stream: what it holds and what it is writing stay under its bound.
		if st.QueuedBytes > queueBytes {
			t.Fatalf("QueuedBytes = %d, over the bound of %d", st.QueuedBytes, queueBytes)
		}
	})
	if most == 0 || mostMsgs == 0 {
		t.Errorf("the buffer of a stream whose client does not read never showed: %d bytes, %d messages", most, mostMsgs)
	}
	t.Logf("most queued: %d bytes in %d events (bound %d bytes)", most, mostMsgs, queueBytes)

	io.Copy(io.Discard, resp.Body) // reads down to the stream's end
	deadline := time.Now().Add(10 * time.Second)
	for st := h.Stats(); st.QueuedBytes != 0 || st.QueuedMessages != 0 || st.EventStreams != 0; st = h.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("after the stream ended: %d bytes and %d messages queued, %d streams", st.QueuedBytes, st.QueuedMessages, st.EventStreams)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/hub", &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatalf("WebSocket once the stream ended: %v", err)
	}
	c.CloseNow()
}
