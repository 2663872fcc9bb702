package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// inMsg is any message from the hub, decoded loosely.
type inMsg struct {
	ID        uint64          `json:"id"`
	Result    json.RawMessage `json:"result"`
	Error     *Error          `json:"error"`
	Push      string          `json:"push"`
	Room      string          `json:"room"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Data      json.RawMessage `json:"data"`
	From      *ClientInfo     `json:"from"`
	Client    ClientInfo      `json:"client"`
	Code      int             `json:"code"`
	Reason    string          `json:"reason"`
	Reconnect bool            `json:"reconnect"`
}

type subResult struct {
	Room         string       `json:"room"`
	Position     Position     `json:"position"`
	Recovered    *bool        `json:"recovered"`
	Publications []wirePub    `json:"publications"`
	Presence     []ClientInfo `json:"presence"`
}

// testClient speaks the hub's protocol over a real WebSocket from Dial.
type testClient struct {
	t      testing.TB
	c      *websocket.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	msgs   []inMsg // everything received, in order
	err    error   // why reading ended
	done   chan struct{}
	nextID uint64
	id     string // client id from connect
}

// serveMode is how the hub reads its WebSocket clients: a goroutine each,
// or websocket's event loop (Options.EventLoop). The behaviour tests run in
// both (inEachMode).
type serveMode struct {
	name      string
	eventLoop bool
}

var serveModes = []serveMode{{"goroutines", false}, {"eventloop", true}}

// inEachMode runs test as a subtest per serveMode.
func inEachMode(t *testing.T, test func(t *testing.T, mode serveMode)) {
	for _, mode := range serveModes {
		t.Run(mode.name, func(t *testing.T) { test(t, mode) })
	}
}

// startHub serves a Hub made with opts, in mode, over HTTP/1.1.
func startHub(t testing.TB, mode serveMode, opts Options) (*Hub, string) {
	t.Helper()
	opts.EventLoop = mode.eventLoop
	h := New(opts)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Close()
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// startHubSendBuffer is startHub with the server's socket send buffers fixed
// at sndbuf bytes, as a server with many subscribers would set them:
// otherwise Linux lets each grow to tcp_wmem's maximum (4 MiB here) and hides
// that much behind a client that does not read before the hub's queue sees
// any of it.
func startHubSendBuffer(t testing.TB, mode serveMode, opts Options, sndbuf int) (*Hub, string) {
	t.Helper()
	opts.EventLoop = mode.eventLoop
	h := New(opts)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		c.(*net.TCPConn).SetWriteBuffer(sndbuf)
		return ctx
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Close()
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// dialRaw opens a WebSocket to the hub without sending connect.
func dialRaw(t testing.TB, url string) *testClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	tc := &testClient{t: t, c: c, done: make(chan struct{})}
	tc.cond = sync.NewCond(&tc.mu)
	go tc.read()
	t.Cleanup(func() { tc.c.CloseNow(); <-tc.done })
	return tc
}

// dialHub opens a WebSocket and connects with data.
func dialHub(t testing.TB, url string, data string) *testClient {
	t.Helper()
	tc := dialRaw(t, url)
	m := tc.call(map[string]any{"op": "connect", "data": json.RawMessage(data)})
	if m.Error != nil {
		t.Fatalf("connect: %v", m.Error)
	}
	var res connectResult
	json.Unmarshal(m.Result, &res)
	tc.id = res.Client
	return tc
}

func (tc *testClient) read() {
	defer close(tc.done)
	for {
		msg, err := tc.c.Read(context.Background())
		tc.mu.Lock()
		if err != nil {
			tc.err = err
			tc.cond.Broadcast()
			tc.mu.Unlock()
			return
		}
		var m inMsg
		if jerr := json.Unmarshal(msg.Data, &m); jerr != nil {
			tc.err = fmt.Errorf("bad JSON from hub: %v: %s", jerr, msg.Data)
		}
		tc.msgs = append(tc.msgs, m)
		tc.cond.Broadcast()
		tc.mu.Unlock()
	}
}

// send sends a command and returns its id.
func (tc *testClient) send(cmd map[string]any) uint64 {
	tc.t.Helper()
	tc.mu.Lock()
	tc.nextID++
	id := tc.nextID
	tc.mu.Unlock()
	cmd["id"] = id
	b, _ := json.Marshal(cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.c.Write(ctx, websocket.MessageText, b); err != nil {
		tc.t.Fatalf("send %s: %v", b, err)
	}
	return id
}

// waitFor waits until pred holds over the messages received, or the
// connection ends, or timeout.
func (tc *testClient) waitFor(timeout time.Duration, pred func(msgs []inMsg) bool) bool {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() { tc.mu.Lock(); tc.cond.Broadcast(); tc.mu.Unlock() })
	defer stop.Stop()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	for !pred(tc.msgs) {
		if tc.err != nil || time.Now().After(deadline) {
			return pred(tc.msgs)
		}
		tc.cond.Wait()
	}
	return true
}

// call sends a command and waits for its reply.
func (tc *testClient) call(cmd map[string]any) inMsg {
	tc.t.Helper()
	id := tc.send(cmd)
	var got inMsg
	ok := tc.waitFor(10*time.Second, func(msgs []inMsg) bool {
		for _, m := range msgs {
			if m.ID == id {
				got = m
				return true
			}
		}
		return false
	})
	if !ok {
		tc.mu.Lock()
		err := tc.err
		tc.mu.Unlock()
		tc.t.Fatalf("no reply to %v (connection: %v)", cmd, err)
	}
	return got
}

// pubs returns the pub pushes received for room.
func (tc *testClient) pubs(room string) []inMsg {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return pubsIn(tc.msgs, room)
}

// pubsIn returns the pub pushes for room among msgs.
func pubsIn(msgs []inMsg, room string) []inMsg {
	var out []inMsg
	for _, m := range msgs {
		if m.Push == "pub" && m.Room == room {
			out = append(out, m)
		}
	}
	return out
}

// closeCode waits for the connection to end and returns the close code the
// hub sent.
func (tc *testClient) closeCode(timeout time.Duration) (websocket.StatusCode, string) {
	select {
	case <-tc.done:
	case <-time.After(timeout):
		tc.t.Fatalf("connection still open after %v", timeout)
	}
	var ce *websocket.CloseError
	if errors.As(tc.err, &ce) {
		return ce.Code, ce.Reason
	}
	tc.t.Fatalf("connection ended without a close frame: %v", tc.err)
	return 0, ""
}

func subscribeResultOf(t testing.TB, m inMsg) subResult {
	t.Helper()
	if m.Error != nil {
		t.Fatalf("subscribe refused: %v", m.Error)
	}
	var r subResult
	if err := json.Unmarshal(m.Result, &r); err != nil {
		t.Fatalf("subscribe result: %v: %s", err, m.Result)
	}
	return r
}

// subscribeSync connects a client to the hub and subscribes it to room,
// reading the replies itself: the client holds no reading goroutine.
func subscribeSync(t testing.TB, ctx context.Context, url, room string) *websocket.Conn {
	t.Helper()
	return subscribeSyncWith(t, ctx, url, room, nil)
}

// subscribeSyncWith is subscribeSync through an HTTP client of the
// caller's (nil: the default one).
func subscribeSyncWith(t testing.TB, ctx context.Context, url, room string, hc *http.Client) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	for id, cmd := range []string{`{"id":1,"op":"connect"}`, `{"id":2,"op":"subscribe","room":"` + room + `"}`} {
		if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		msg, err := c.Read(ctx)
		var m inMsg
		if err == nil {
			err = json.Unmarshal(msg.Data, &m)
		}
		if err != nil || m.ID != uint64(id+1) || m.Error != nil {
			t.Fatalf("%s: reply %s, %v", cmd, msg.Data, err)
		}
	}
	return c
}
