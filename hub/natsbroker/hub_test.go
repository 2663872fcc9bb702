package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The hub on this broker, over real WebSockets: hubs on two "nodes" (two
// brokers with their own NATS connections) share rooms; a client that
// drops and comes back on the other node with its last position gets
// exactly what it missed, then live publications; after a purge, or after
// the stream is deleted and made again, it is told that it cannot recover
// and gets none of the old ones.

// wsClient speaks the hub's protocol (hub/PROTOCOL.md) over a WebSocket.
type wsClient struct {
	t      testing.TB
	c      *websocket.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	msgs   []wsMsg
	err    error
	done   chan struct{}
	nextID uint64
}

type wsMsg struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *hub.Error      `json:"error"`
	Push   string          `json:"push"`
	Room   string          `json:"room"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
}

type wsSubResult struct {
	Position     hub.Position `json:"position"`
	Recovered    *bool        `json:"recovered"`
	Publications []wsMsg      `json:"publications"`
}

func startHub(t testing.TB, b hub.Broker, opts hub.Options) (*hub.Hub, string) {
	t.Helper()
	opts.Broker = b
	opts.PublishRate = -1
	h := hub.New(opts)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Close()
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dialHub(t testing.TB, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wc, err := tryDialHub(ctx, t, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return wc
}

// tryDialHub is dialHub for tests where the network may fail: it returns
// the error of the dial or of the connect command instead of failing.
func tryDialHub(ctx context.Context, t testing.TB, url string, opts *websocket.DialOptions) (*wsClient, error) {
	var o websocket.DialOptions
	if opts != nil {
		o = *opts
	}
	o.Subprotocols = []string{hub.Subprotocol}
	c, _, err := websocket.Dial(ctx, url, &o)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	wc := &wsClient{t: t, c: c, done: make(chan struct{})}
	wc.cond = sync.NewCond(&wc.mu)
	go wc.read()
	t.Cleanup(func() { wc.c.CloseNow(); <-wc.done })
	m, err := wc.tryCall(map[string]any{"op": "connect"})
	if err == nil && m.Error != nil {
		err = m.Error
	}
	if err != nil {
		wc.c.CloseNow()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return wc, nil
}

func (wc *wsClient) read() {
	defer close(wc.done)
	for {
		msg, err := wc.c.Read(context.Background())
		wc.mu.Lock()
		if err != nil {
			wc.err = err
			wc.cond.Broadcast()
			wc.mu.Unlock()
			return
		}
		var m wsMsg
		if jerr := json.Unmarshal(msg.Data, &m); jerr != nil {
			wc.err = fmt.Errorf("bad JSON from hub: %v", jerr)
		}
		wc.msgs = append(wc.msgs, m)
		wc.cond.Broadcast()
		wc.mu.Unlock()
	}
}

// waitFor waits until pred holds over the messages, the connection ends,
// or 10s pass.
func (wc *wsClient) waitFor(pred func([]wsMsg) bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	stop := time.AfterFunc(10*time.Second, func() { wc.mu.Lock(); wc.cond.Broadcast(); wc.mu.Unlock() })
	defer stop.Stop()
	wc.mu.Lock()
	defer wc.mu.Unlock()
	for !pred(wc.msgs) {
		if wc.err != nil || time.Now().After(deadline) {
			return pred(wc.msgs)
		}
		wc.cond.Wait()
	}
	return true
}

func (wc *wsClient) send(cmd map[string]any) uint64 {
	id, err := wc.trySend(cmd)
	if err != nil {
		wc.t.Fatal(err)
	}
	return id
}

func (wc *wsClient) trySend(cmd map[string]any) (uint64, error) {
	wc.mu.Lock()
	wc.nextID++
	id := wc.nextID
	wc.mu.Unlock()
	cmd["id"] = id
	b, _ := json.Marshal(cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := wc.c.Write(ctx, websocket.MessageText, b); err != nil {
		return 0, fmt.Errorf("send %s: %w", b, err)
	}
	return id, nil
}

func (wc *wsClient) call(cmd map[string]any) wsMsg {
	wc.t.Helper()
	m, err := wc.tryCall(cmd)
	if err != nil {
		wc.t.Fatal(err)
	}
	return m
}

// tryCall sends a command and waits for its reply; it fails when the
// connection ends first or no reply comes within 10s.
func (wc *wsClient) tryCall(cmd map[string]any) (wsMsg, error) {
	id, err := wc.trySend(cmd)
	if err != nil {
		return wsMsg{}, err
	}
	var got wsMsg
	if !wc.waitFor(func(msgs []wsMsg) bool {
		for _, m := range msgs {
			if m.ID == id {
				got = m
				return true
			}
		}
		return false
	}) {
		wc.mu.Lock()
		defer wc.mu.Unlock()
		return wsMsg{}, fmt.Errorf("no reply to %v (connection: %v)", cmd, wc.err)
	}
	return got, nil
}

func (wc *wsClient) subscribe(room string, since *hub.Position) wsSubResult {
	wc.t.Helper()
	cmd := map[string]any{"op": "subscribe", "room": room}
	if since != nil {
		cmd["since"] = since
	}
	m := wc.call(cmd)
	if m.Error != nil {
		wc.t.Fatalf("subscribe %s: %v", room, m.Error)
	}
	var res wsSubResult
	if err := json.Unmarshal(m.Result, &res); err != nil {
		wc.t.Fatal(err)
	}
	return res
}

func (wc *wsClient) pubs(room string) []wsMsg {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	var out []wsMsg
	for _, m := range wc.msgs {
		if m.Push == "pub" && m.Room == room {
			out = append(out, m)
		}
	}
	return out
}

func (wc *wsClient) waitPubs(room string, n int) []wsMsg {
	wc.t.Helper()
	if !wc.waitFor(func([]wsMsg) bool { return len(wc.pubsLocked(room)) >= n }) {
		wc.t.Fatalf("got %d publications of %s, want %d (connection: %v)", len(wc.pubs(room)), room, n, wc.err)
	}
	return wc.pubs(room)
}

func (wc *wsClient) pubsLocked(room string) []wsMsg {
	var out []wsMsg
	for _, m := range wc.msgs {
		if m.Push == "pub" && m.Room == room {
			out = append(out, m)
		}
	}
	return out
}

func TestHubOverWebSocketRecovers(t *testing.T) {
	n := newNode(t, "", Options{})
	hA, urlA := startHub(t, n.b, hub.Options{})
	hB, urlB := startHub(t, n.broker(Options{}), hub.Options{})
	ctx := context.Background()

	c := dialHub(t, urlA)
	res := c.subscribe("chat", nil)
	var want []hub.Position
	for i := 0; i < 5; i++ {
		p, err := hB.Publish(ctx, "chat", json.RawMessage(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		hB.Publish(ctx, "noise", json.RawMessage(`0`))
		want = append(want, p)
	}
	got := c.waitPubs("chat", 5)
	for i, m := range got {
		if m.Offset != want[i].Offset || m.Epoch != want[i].Epoch || string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("live %d: %+v, want %+v", i, m, want[i])
		}
	}
	if res.Position.Offset >= want[0].Offset {
		t.Fatalf("subscribed at %+v, first publication %+v", res.Position, want[0])
	}
	last := hub.Position{Offset: got[4].Offset, Epoch: got[4].Epoch}
	c.c.CloseNow()

	for i := 5; i < 10; i++ {
		p, _ := hA.Publish(ctx, "chat", json.RawMessage(fmt.Sprint(i)))
		want = append(want, p)
	}
	// Back on the other node: exactly the five missed, then live ones.
	c2 := dialHub(t, urlB)
	res = c2.subscribe("chat", &last)
	if res.Recovered == nil || !*res.Recovered || len(res.Publications) != 5 || res.Position != want[9] {
		t.Fatalf("recovery: recovered %v, %d publications, position %+v", res.Recovered, len(res.Publications), res.Position)
	}
	for i, m := range res.Publications {
		if m.Offset != want[5+i].Offset || string(m.Data) != fmt.Sprint(5+i) {
			t.Fatalf("recovered %d: %+v", i, m)
		}
	}
	p, _ := hA.Publish(ctx, "chat", json.RawMessage(`10`))
	if m := c2.waitPubs("chat", 1)[0]; m.Offset != p.Offset {
		t.Fatalf("live after recovery: %+v, want %+v", m, p)
	}
	last = p

	// Purged while away: told it cannot recover, given none.
	c2.c.CloseNow()
	hA.Publish(ctx, "chat", json.RawMessage(`11`))
	if err := n.b.Purge(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	after, _ := hA.Publish(ctx, "chat", json.RawMessage(`12`))
	c3 := dialHub(t, urlA)
	res = c3.subscribe("chat", &last)
	if res.Recovered == nil || *res.Recovered || len(res.Publications) != 0 || res.Position != after {
		t.Fatalf("after purge: recovered %v, %d publications, position %+v (want %+v)", res.Recovered, len(res.Publications), res.Position, after)
	}
	last = after

	// The stream deleted and made again while away: the same.
	c3.c.CloseNow()
	js, _ := jetstream.New(n.nc)
	if err := js.DeleteStream(ctx, "DUPLEX"); err != nil {
		t.Fatal(err)
	}
	fresh, err := hB.Publish(ctx, "chat", json.RawMessage(`"new"`))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Epoch == last.Epoch {
		t.Fatal("recreated stream kept its epoch")
	}
	c4 := dialHub(t, urlB)
	res = c4.subscribe("chat", &last)
	if res.Recovered == nil || *res.Recovered || len(res.Publications) != 0 || res.Position.Epoch != fresh.Epoch {
		t.Fatalf("after recreate: recovered %v, %d publications, position %+v", res.Recovered, len(res.Publications), res.Position)
	}
	t.Logf("hub A %+v, hub B %+v", hA.Stats(), hB.Stats())
}

// closeCode waits for the connection to end and returns its close code.
func (wc *wsClient) closeCode() websocket.StatusCode {
	wc.t.Helper()
	select {
	case <-wc.done:
	case <-time.After(10 * time.Second):
		wc.t.Fatal("connection not closed")
	}
	var ce *websocket.CloseError
	if !errors.As(wc.err, &ce) {
		wc.t.Fatalf("connection ended with %v, not a close", wc.err)
	}
	return ce.Code
}

// Subscribers connected while their room is purged, or while the stream is
// made again, are closed with 4010 at the room's next publication (a broken
// Prev chain that history refuses to fill, or a new epoch), and are told on
// return that they cannot recover.
func TestHubLiveSubscribersResetOnPurgeAndRecreate(t *testing.T) {
	n := newNode(t, "", Options{})
	h, url := startHub(t, n.b, hub.Options{})
	ctx := context.Background()
	for _, step := range []string{"purge", "recreate"} {
		c := dialHub(t, url)
		c.subscribe("live", nil)
		p, err := h.Publish(ctx, "live", json.RawMessage(`1`))
		if err != nil {
			t.Fatal(err)
		}
		c.waitPubs("live", 1)
		switch step {
		case "purge":
			if err := n.b.Purge(ctx, "live"); err != nil {
				t.Fatal(err)
			}
		case "recreate":
			js, _ := jetstream.New(n.nc)
			if err := js.DeleteStream(ctx, "DUPLEX"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.Publish(ctx, "live", json.RawMessage(`2`)); err != nil {
			t.Fatal(err)
		}
		if code := c.closeCode(); code != hub.CloseInsufficientState {
			t.Fatalf("%s: close code %d, want %d", step, code, hub.CloseInsufficientState)
		}
		if got := c.pubs("live"); len(got) != 1 {
			t.Fatalf("%s: %d publications before the close, want 1", step, len(got))
		}
		c2 := dialHub(t, url)
		res := c2.subscribe("live", &p)
		if res.Recovered == nil || *res.Recovered || len(res.Publications) != 0 {
			t.Fatalf("%s: recovered %v with %d publications", step, res.Recovered, len(res.Publications))
		}
		c2.c.CloseNow()
	}
	t.Logf("hub %+v", h.Stats())
}

// A hub bug this broker's tests ran into: when a room's repair failed
// (history refused the gap) the room reset its subscribers but stayed in the
// hub with the position it had before the gap, until the reset sessions let
// it go. A client that subscribed in that window was told that stale
// position, and the room's next publication was delivered to it: the client
// silently missed what lay between. A reset now retires the room, and the
// next subscriber starts a fresh one from the broker's position.
func TestHubResetRoomStartsFresh(t *testing.T) {
	n := newNode(t, "", Options{})
	h, url := startHub(t, n.b, hub.Options{})
	ctx := context.Background()

	// A subscribes, then stops reading: its close will take long.
	ctxA, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a, _, err := websocket.Dial(ctxA, url, &websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseNow()
	for _, cmd := range []string{`{"id":1,"op":"connect"}`, `{"id":2,"op":"subscribe","room":"x"}`} {
		a.Write(ctxA, websocket.MessageText, []byte(cmd))
		if _, err := a.Read(ctxA); err != nil {
			t.Fatal(err)
		}
	}
	p1, _ := h.Publish(ctx, "x", json.RawMessage(`1`))
	if err := n.b.Purge(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	p2, _ := h.Publish(ctx, "x", json.RawMessage(`2`))
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Resets == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reset")
		}
		time.Sleep(time.Millisecond)
	}
	b := dialHub(t, url)
	res := b.subscribe("x", nil)
	p3, _ := h.Publish(ctx, "x", json.RawMessage(`3`))
	got := b.waitPubs("x", 1)
	if res.Position.Offset < p2.Offset || got[0].Offset != p3.Offset {
		t.Fatalf("subscribed after the reset at %+v (p1 %d, p2 %d), then got %d: p2 missed without a word", res.Position, p1.Offset, p2.Offset, got[0].Offset)
	}
}

// A node whose NATS connection drops misses what is republished meanwhile.
// Its rooms fill the gap from the stream: on reconnect the broker delivers
// what followed the last publication it delivered, and a gap noticed later
// (a Prev that does not chain) is filled by the hub from history. The
// client gets every publication once, in order, even when the last ones
// were published while its node was away. While the connection is down,
// Publish refuses with ErrNotConnected instead of buffering.
func TestHubNodeReconnectsToNATS(t *testing.T) {
	n := newNode(t, "", Options{})
	nc, err := n.srv.Connect(nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	flaky, err := New(context.Background(), nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer flaky.Close()
	hA, urlA := startHub(t, flaky, hub.Options{})
	hB, _ := startHub(t, n.b, hub.Options{})
	ctx := context.Background()
	c := dialHub(t, urlA)
	c.subscribe("r", nil)
	refused := 0
	const total = 200
	for i := 0; i < total; i++ {
		if i%25 == 10 {
			nc.ForceReconnect()
			if _, err := hA.Publish(ctx, "r", json.RawMessage(`"x"`)); errors.Is(err, ErrNotConnected) {
				refused++
			} else if err == nil {
				t.Fatal("published through a node that was reconnecting")
			}
		}
		if _, err := hB.Publish(ctx, "r", json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := c.waitPubs("r", total)
	for i, m := range got {
		if string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("publication %d is %s", i, m.Data)
		}
	}
	if len(got) != total {
		t.Fatalf("%d publications, want %d", len(got), total)
	}
	t.Logf("%d publishes refused while reconnecting; hub A %+v", refused, hA.Stats())
}
