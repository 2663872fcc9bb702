package natsbroker

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Toxiproxy v2.12.0 can leave a link's goroutine blocked for good
	// when a toxic is added to a connection that is closing
	// (ToxicLink.AddToxic starts a stub whose send nobody takes): its
	// leak, not ours (faults_test.go).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"))
}

// node is one embedded server with a connection and a broker on it.
type node struct {
	t   testing.TB
	dir string
	srv *Server
	nc  *nats.Conn
	b   *Broker
}

func startServer(t testing.TB, dir string) *Server {
	t.Helper()
	srv, err := StartServer(ServerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// newNode starts a server on dir (a new temporary one when "") and a broker
// with opts. Cleanup closes all of it.
func newNode(t testing.TB, dir string, opts Options) *node {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	n := &node{t: t, dir: dir, srv: startServer(t, dir)}
	var err error
	if n.nc, err = n.srv.Connect(); err != nil {
		t.Fatal(err)
	}
	if n.b, err = New(context.Background(), n.nc, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	return n
}

// stop closes the broker, the connection and the server; it may be called
// more than once.
func (n *node) stop() {
	if n.b != nil {
		n.b.Close()
		n.b = nil
	}
	if n.nc != nil {
		n.nc.Close()
		n.nc = nil
	}
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv = nil
	}
}

// broker opens another broker (another "node" of the hub) on the same
// server, with its own connection.
func (n *node) broker(opts Options) *Broker {
	n.t.Helper()
	nc, err := n.srv.Connect()
	if err != nil {
		n.t.Fatal(err)
	}
	b, err := New(context.Background(), nc, opts)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { b.Close(); nc.Close() })
	return b
}

func publish(t testing.TB, b *Broker, room string, data string) hub.Position {
	t.Helper()
	pos, err := b.Publish(context.Background(), room, hub.Message{Data: json.RawMessage(data)})
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func history(t testing.TB, b *Broker, room string, q hub.HistoryQuery) hub.History {
	t.Helper()
	h, err := b.History(context.Background(), room, q)
	if err != nil {
		t.Fatalf("history of %s %+v: %v", room, q, err)
	}
	return h
}

// recorder collects a subscription's events.
type recorder struct {
	mu   sync.Mutex
	cond *sync.Cond
	evs  []hub.Event
}

func newRecorder() *recorder {
	r := &recorder{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *recorder) deliver(ev hub.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.cond.Broadcast()
	r.mu.Unlock()
}

// wait waits until pred holds over the events, or fails the test.
func (r *recorder) wait(t testing.TB, what string, pred func([]hub.Event) bool) []hub.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	stop := time.AfterFunc(10*time.Second, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer stop.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !pred(r.evs) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have %d events", what, len(r.evs))
		}
		r.cond.Wait()
	}
	return append([]hub.Event(nil), r.evs...)
}

func pubs(evs []hub.Event) []hub.Publication {
	var out []hub.Publication
	for _, ev := range evs {
		if ev.Kind == hub.EventPublication {
			out = append(out, ev.Publication)
		}
	}
	return out
}

func subscribe(t testing.TB, b *Broker, room string) *recorder {
	t.Helper()
	r := newRecorder()
	s, err := b.Subscribe(context.Background(), room, r.deliver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return r
}

func offsets(ps []hub.Publication) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.Offset
	}
	return out
}

func datas(ps []hub.Publication) string {
	s := ""
	for _, p := range ps {
		s += string(p.Data) + " "
	}
	return s
}
