package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A cluster of three embedded nodes in this process: three StartServer
// joined by routes on 127.0.0.1, each with its own file store, its own
// connection and a broker on it, as three duplex processes would be.

type cnode struct {
	name, dir, route string
	srv              *Server
	nc               *nats.Conn
	b                *Broker
}

type cluster struct {
	t      testing.TB
	routes []string
	opts   Options
	nodes  []*cnode
}

// freePorts finds n free TCP ports on 127.0.0.1. A cluster's nodes must
// know each other's route addresses before they start: every node lists
// all of them, as a real deployment does.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// newCluster starts n nodes at once (each StartServer waits for a quorum
// of them) and then a broker with opts on each, at once too, so that they
// race to create the streams.
func newCluster(t testing.TB, n int, opts Options) *cluster {
	t.Helper()
	c := &cluster{t: t, opts: opts}
	for i, p := range freePorts(t, n) {
		route := fmt.Sprintf("127.0.0.1:%d", p)
		c.routes = append(c.routes, route)
		c.nodes = append(c.nodes, &cnode{name: string(rune('A' + i)), dir: t.TempDir(), route: route})
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.stop(nd)
		}
	})
	t0 := time.Now()
	c.all(func(nd *cnode) error { return c.startServer(nd) })
	t1 := time.Now()
	c.all(func(nd *cnode) error { return c.connect(nd) })
	t.Logf("cluster: servers up in %v, brokers in %v", t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	return c
}

// all runs f on every node at once.
func (c *cluster) all(f func(*cnode) error) {
	c.t.Helper()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		wg.Go(func() { errs[i] = f(nd) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) startServer(nd *cnode) error {
	srv, err := StartServer(ServerOptions{
		Dir: nd.dir, Name: nd.name,
		Cluster: "duplex-test", ClusterListen: nd.route, Routes: c.routes,
		ClusterTimeout: 20 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("node %s: %w", nd.name, err)
	}
	nd.srv = srv
	return nil
}

func (c *cluster) connect(nd *cnode) error {
	nc, err := nd.srv.Connect()
	if err != nil {
		return err
	}
	b, err := New(context.Background(), nc, c.opts)
	if err != nil {
		nc.Close()
		return fmt.Errorf("node %s: %w", nd.name, err)
	}
	nd.nc, nd.b = nc, b
	return nil
}

// kill stops a node's NATS server at once: no drain, its broker and
// connection are left to fail, as they would in a process that dies.
// (nats-server's Shutdown still hands over the leaderships this server
// holds before it goes, server.go:2627: a kill -9 does not; that is for
// the multi-process tests.)
func (c *cluster) kill(nd *cnode) {
	nd.srv.Shutdown()
	nd.srv = nil
}

// stop closes what is left of a node.
func (c *cluster) stop(nd *cnode) {
	if nd.b != nil {
		nd.b.Close()
		nd.b = nil
	}
	if nd.nc != nil {
		nd.nc.Close()
		nd.nc = nil
	}
	if nd.srv != nil {
		nd.srv.Shutdown()
		nd.srv = nil
	}
}

// restart starts a killed node again on its directory, with a new
// connection and broker.
func (c *cluster) restart(nd *cnode) {
	c.t.Helper()
	c.stop(nd)
	if err := c.startServer(nd); err != nil {
		c.t.Fatal(err)
	}
	if err := c.connect(nd); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) node(name string) *cnode {
	for _, nd := range c.nodes {
		if nd.name == name {
			return nd
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// info is the rooms' stream as its leader tells it, asked through nd. A
// request sent during an election may go unanswered: each try waits a
// second.
func (c *cluster) info(nd *cnode) *jetstream.StreamInfo {
	c.t.Helper()
	info, err := c.tryInfo(nd)
	if err != nil {
		c.t.Fatal(err)
	}
	return info
}

func (c *cluster) tryInfo(nd *cnode) (*jetstream.StreamInfo, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := nd.b.leaderInfo(ctx, nd.b.stream, "")
		cancel()
		if err == nil {
			return info, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("stream info through %s: %w", nd.name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stepDown asks the rooms' stream leader to step down, for preferred
// when not "", and waits until another leader (preferred) is in place. A
// leader that steps down may be elected again (the peer it hands over to
// must be current): it asks again, up to five times. It may run on another
// goroutine than the test's.
func (c *cluster) stepDown(through *cnode, preferred string) (string, error) {
	info, err := c.tryInfo(through)
	if err != nil {
		return "", err
	}
	old := info.Cluster.Leader
	var req struct {
		Placement *struct {
			Preferred string `json:"preferred"`
		} `json:"placement,omitempty"`
	}
	if preferred != "" {
		req.Placement = &struct {
			Preferred string `json:"preferred"`
		}{preferred}
	}
	body, _ := json.Marshal(req)
	l := old
	for range 5 {
		m, err := through.nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+through.b.stream, body, 5*time.Second)
		if err != nil {
			return "", fmt.Errorf("step down: %w", err)
		}
		var resp struct {
			Success bool `json:"success"`
		}
		if json.Unmarshal(m.Data, &resp); !resp.Success {
			return "", fmt.Errorf("step down: %s", m.Data)
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			info, err := c.tryInfo(through)
			if err != nil {
				return "", err
			}
			l = info.Cluster.Leader
			if l != "" && l != old && (preferred == "" || l == preferred) {
				return l, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return "", fmt.Errorf("no new leader after %s stepped down five times (now %q)", old, l)
}

// localState is the rooms' stream as the node's own store holds it,
// whether leader or follower.
func localState(t testing.TB, nd *cnode, stream string) (server.StreamState, bool) {
	t.Helper()
	jsz, err := nd.srv.NATS().Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, acc := range jsz.AccountDetails {
		for _, s := range acc.Streams {
			if s.Name == stream {
				return s.State, true
			}
		}
	}
	return server.StreamState{}, false
}

// directMember says whether the node's replica of stream answers direct
// gets: it has a local subscription in their queue group.
func directMember(t testing.TB, nd *cnode, stream string) bool {
	sz, err := nd.srv.NATS().Subsz(&server.SubszOptions{Subscriptions: true, Limit: 1000, Test: "$JS.API.DIRECT.GET." + stream})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sz.Subs {
		if s.Subject == "$JS.API.DIRECT.GET."+stream && s.Queue != "" {
			return true
		}
	}
	return false
}

// killableHub is a hub served over HTTP whose connections can be cut at
// the TCP level, as when its process dies (httptest forgets hijacked
// connections, so it cannot cut WebSockets itself).
type killableHub struct {
	h     *hub.Hub
	ts    *httptest.Server
	url   string
	mu    sync.Mutex
	conns []net.Conn
}

type trackingListener struct {
	net.Listener
	kh *killableHub
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.kh.mu.Lock()
		l.kh.conns = append(l.kh.conns, c)
		l.kh.mu.Unlock()
	}
	return c, err
}

func startKillableHub(t testing.TB, b hub.Broker) *killableHub {
	t.Helper()
	kh := &killableHub{h: hub.New(hub.Options{Broker: b, PublishRate: -1})}
	kh.ts = httptest.NewUnstartedServer(kh.h)
	kh.ts.Listener = trackingListener{kh.ts.Listener, kh}
	kh.ts.Start()
	kh.url = "ws" + strings.TrimPrefix(kh.ts.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kh.h.Shutdown(ctx)
		kh.kill()
	})
	return kh
}

// kill cuts every connection of the hub and stops taking new ones.
func (kh *killableHub) kill() {
	kh.ts.Listener.Close()
	kh.mu.Lock()
	for _, c := range kh.conns {
		c.Close()
	}
	kh.conns = nil
	kh.mu.Unlock()
	kh.ts.Close()
}

// publisher publishes 0..n-1 to room through b, every gap, each with a key
// so that a publish retried after an error (a leader lost on the way)
// is stored once. Done is closed when all are stored.
type publisher struct {
	mu   sync.Mutex
	pos  []hub.Position
	errs int
	done chan struct{}
	err  error
}

func startPublisher(b *Broker, room string, n int, gap time.Duration, at map[int]func()) *publisher {
	p := &publisher{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.run(n, gap, at, func(i int) (hub.Position, error) {
			// A publish in flight when the leader changes gets no
			// answer: it is retried (with its key) after a second.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return b.Publish(ctx, room, hub.Message{Data: json.RawMessage(fmt.Sprint(i)), Key: fmt.Sprint("k", i)})
		})
	}()
	return p
}

// errStopPublishing, wrapped in the error of a publisher's publishOne,
// ends the publisher's run at once rather than retrying.
var errStopPublishing = errors.New("publisher stopped")

// run publishes 0..n-1 with publishOne, one every gap, retrying each
// every 50ms for up to 30s (publishOne gives each its key k<i>, so that a
// retry of a publish stored before its answer was lost is not stored
// twice); at[i] runs before publication i. It records the positions, the
// retries and, in p.err, why it stopped early.
func (p *publisher) run(n int, gap time.Duration, at map[int]func(), publishOne func(i int) (hub.Position, error)) {
	for i := range n {
		if f := at[i]; f != nil {
			f()
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			pos, err := publishOne(i)
			if err == nil {
				p.mu.Lock()
				p.pos = append(p.pos, pos)
				p.mu.Unlock()
				break
			}
			if errors.Is(err, errStopPublishing) {
				p.err = fmt.Errorf("publish %d: %w", i, err)
				return
			}
			p.mu.Lock()
			p.errs++
			p.mu.Unlock()
			if time.Now().After(deadline) {
				p.err = fmt.Errorf("publish %d: %w", i, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(gap)
	}
}

func (p *publisher) wait(t testing.TB) []hub.Position {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("publisher stuck")
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.pos
}

// checkSequence fails unless the data of msgs are 0..n-1, each once, in
// order, and their positions those the publisher got (want).
func checkSequence(t testing.TB, who string, msgs []wsMsg, want []hub.Position) {
	t.Helper()
	checkSequenceFrom(t, who, msgs, want, 0)
}

// checkSequenceFrom is checkSequence for msgs that begin at publication
// from: want[i] is that of publication from+i.
func checkSequenceFrom(t testing.TB, who string, msgs []wsMsg, want []hub.Position, from int) {
	t.Helper()
	for i, m := range msgs {
		if i >= len(want) {
			t.Fatalf("%s: %d publications, want %d", who, len(msgs), len(want))
		}
		if string(m.Data) != fmt.Sprint(from+i) || m.Offset != want[i].Offset || m.Epoch != want[i].Epoch {
			t.Fatalf("%s: publication %d is %s at %d/%s, want %d at %+v (lost, duplicated or reordered)", who, i, m.Data, m.Offset, m.Epoch, from+i, want[i])
		}
	}
	if len(msgs) != len(want) {
		t.Fatalf("%s: %d publications, want %d", who, len(msgs), len(want))
	}
}

// waitTotal waits until a client holds n publications of room, over
// several 10s waits while they keep coming.
func (wc *wsClient) waitTotal(room string, n int, before int) []wsMsg {
	wc.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if wc.waitFor(func([]wsMsg) bool { return before+len(wc.pubsLocked(room)) >= n }) {
			return wc.pubs(room)
		}
		wc.mu.Lock()
		err := wc.err
		wc.mu.Unlock()
		if err != nil || time.Now().After(deadline) {
			wc.t.Fatalf("got %d publications of %s, want %d (connection: %v)", before+len(wc.pubs(room)), room, n, err)
		}
	}
}

// Nodes that start together and all call New make one rooms' stream, with
// the replicas asked for and one epoch seen from every node; a node that
// asks for other replicas is refused with a message that says so.
// Live delivery goes only where there are subscribers: the routes carry a
// room's event subjects only towards the nodes with a subscriber for it.
func TestClusterStreamOnceAndInterest(t *testing.T) {
	c := newCluster(t, 3, Options{Replicas: 3})
	a, b, cc := c.node("A"), c.node("B"), c.node("C")
	ctx := context.Background()

	js, _ := jetstream.New(a.nc)
	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	slices.Sort(names)
	if strings.Join(names, " ") != "DUPLEX DUPLEX_PRESENCE" {
		t.Fatalf("streams %v", names)
	}
	info := c.info(a)
	if info.Config.Replicas != 3 || len(info.Cluster.Replicas) != 2 || info.Cluster.Leader == "" {
		t.Fatalf("stream: %d replicas, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	pres, err := js.Stream(ctx, "DUPLEX_PRESENCE")
	if err != nil || pres.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("presence stream: %v", err)
	}
	epochs := map[string]bool{}
	for _, nd := range c.nodes {
		epochs[nd.b.incarnation().epoch] = true
	}
	if len(epochs) != 1 {
		t.Fatalf("epochs %v", epochs)
	}
	_, err = New(ctx, a.nc, Options{Replicas: 1})
	if err == nil || !strings.Contains(err.Error(), "has 3 replicas, this node asks for 1") {
		t.Fatalf("a node asking for R1 of an R3 stream: %v", err)
	}

	hA := startKillableHub(t, a.b)
	hB := startKillableHub(t, b.b)
	hC := startKillableHub(t, cc.b)
	onB := dialHub(t, hB.url)
	onC := dialHub(t, hC.url)
	onB.subscribe("shared", nil)
	onB.subscribe("only-b", nil)
	onC.subscribe("shared", nil)

	// The routes: each server registers the interest of the others on the
	// route to them; a room's event subjects go only towards B (and C).
	interest := func(nd *cnode, subj string) map[string]bool {
		rz, err := nd.srv.NATS().Routez(&server.RoutezOptions{Subscriptions: true})
		if err != nil {
			t.Fatal(err)
		}
		to := map[string]bool{}
		for _, r := range rz.Routes {
			if slices.Contains(r.Subs, subj) {
				to[r.RemoteName] = true
			}
		}
		return to
	}
	onlyB, shared := a.b.eventPrefix(token("only-b"))+">", a.b.eventPrefix(token("shared"))+">"
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := true
		for _, nd := range c.nodes {
			toB, toShared := interest(nd, onlyB), interest(nd, shared)
			wantB := map[string]bool{}
			wantShared := map[string]bool{}
			for _, o := range []string{"B", "C"} {
				if o != nd.name {
					wantShared[o] = true
					if o == "B" {
						wantB[o] = true
					}
				}
			}
			if !mapsEqual(toB, wantB) || !mapsEqual(toShared, wantShared) {
				ok = false
				if time.Now().After(deadline) {
					t.Fatalf("node %s sends only-b towards %v (want %v), shared towards %v (want %v)", nd.name, toB, wantB, toShared, wantShared)
				}
			}
		}
		if ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	// And in counts: C's connection gets nothing of only-b. (Once it is
	// quiet: answers to requests of New's may still come, from members of
	// a stream group that were electing its first leader.)
	inC := cc.nc.Stats().InMsgs
	for {
		time.Sleep(200 * time.Millisecond)
		now := cc.nc.Stats().InMsgs
		if now == inC {
			break
		}
		inC = now
	}
	const n = 20
	var sharedPos, onlyPos []hub.Position
	for i := range n {
		p, err := hA.h.Publish(ctx, "only-b", json.RawMessage(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		onlyPos = append(onlyPos, p)
	}
	gotB := onB.waitPubs("only-b", n)
	if got := cc.nc.Stats().InMsgs - inC; got != 0 {
		t.Fatalf("node C received %d messages while only-b, which it has no subscriber for, got %d publications", got, n)
	}
	for i := range n {
		p, err := hA.h.Publish(ctx, "shared", json.RawMessage(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		sharedPos = append(sharedPos, p)
	}
	checkSequence(t, "B only-b", gotB, onlyPos)
	checkSequence(t, "B shared", onB.waitPubs("shared", n), sharedPos)
	checkSequence(t, "C shared", onC.waitPubs("shared", n), sharedPos)
	t.Logf("leader %s; C's connection got %d messages for %d shared publications", info.Cluster.Leader, cc.nc.Stats().InMsgs-inC, n)
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// History reads its writes wherever it runs: a publication acknowledged
// through node A is in the history read at once through B and C, though
// their own replicas, which answer direct gets there, may not have it
// yet. The test counts how often a plain direct get through the same node
// misses it, which is what History must not do.
func TestClusterHistoryReadsItsWrites(t *testing.T) {
	c := newCluster(t, 3, Options{Replicas: 3})
	a := c.node("A")
	ctx := context.Background()
	// Followers join the direct gets' queue group some time after the
	// stream's leader is elected (a 2s tick: jetstream_cluster.go:4557);
	// until then the leader alone answers, and a read cannot be stale.
	start := time.Now()
	for _, nd := range c.nodes {
		for !directMember(t, nd, "DUPLEX") {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s's replica never answered direct gets", nd.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("all replicas answer direct gets after %v", time.Since(start).Round(time.Millisecond))
	prev := publish(t, a.b, "ryw", "0")
	stale := 0
	const n = 120
	for i := 1; i <= n; i++ {
		p := publish(t, a.b, "ryw", fmt.Sprint(i))
		reader := c.nodes[1+i%2]
		subj := reader.b.roomSubject(token("ryw"))
		var last uint64
		_, _, err := reader.b.directBatch(ctx, reader.b.stream, directReq{LastFor: subj}, func(m *storedMsg) { last = m.seq })
		if err != nil && !errors.Is(err, errNoMessage) {
			t.Fatal(err)
		}
		if last != p.Offset {
			stale++
		}
		h := history(t, reader.b, "ryw", hub.HistoryQuery{Since: &prev, Limit: 10})
		if len(h.Publications) != 1 || h.Publications[0].Position != p || h.Latest != p || h.Publications[0].Prev != prev.Offset {
			t.Fatalf("history through %s right after publish %d at %+v: %d publications, latest %+v", reader.name, i, p, len(h.Publications), h.Latest)
		}
		prev = p
	}
	t.Logf("a direct get through B or C right after the publish missed it %d times in %d; History read from the leader what the replica lacked %d times",
		stale, n, c.node("B").b.fallbacks.Load()+c.node("C").b.fallbacks.Load())
}

// Presence across nodes: a join through one node is seen through the
// others once the presence stream's replica there has it; a leave the same.
func TestClusterPresence(t *testing.T) {
	c := newCluster(t, 3, Options{Replicas: 3})
	a, cc := c.node("A"), c.node("C")
	ctx := context.Background()
	stats := func(nd *cnode, want int) time.Duration {
		start := time.Now()
		for {
			s, err := nd.b.PresenceStats(ctx, "p")
			if err != nil {
				t.Fatal(err)
			}
			if s.Clients == want && s.Users == want {
				return time.Since(start)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("presence through %s: %+v, want %d", nd.name, s, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	ana := hub.ClientInfo{Client: "c1", User: "ana"}
	if err := a.b.Join(ctx, "p", ana); err != nil {
		t.Fatal(err)
	}
	seen := stats(cc, 1)
	if err := a.b.Leave(ctx, "p", ana); err != nil {
		t.Fatal(err)
	}
	gone := stats(cc, 0)
	t.Logf("a join through A was seen through C after %v, a leave after %v", seen, gone)
}

// Node B dies in the middle of a stream of publications: it was the
// stream's leader, its hub's connections are cut. Its clients reconnect to
// C with their last position and recover; every client, on B, then C, or
// on C all along, holds every publication once and in order. The history
// is whole through the two nodes left, and B, started again on its
// directory, catches up and serves it too.
func TestClusterNodeLoss(t *testing.T) {
	c := newCluster(t, 3, Options{Replicas: 3})
	a, b, cc := c.node("A"), c.node("B"), c.node("C")
	if c.info(a).Cluster.Leader != "B" {
		if _, err := c.stepDown(a, "B"); err != nil {
			t.Fatal(err)
		}
	}
	hB := startKillableHub(t, b.b)
	hC := startKillableHub(t, cc.b)
	const room, n, killAt = "feed", 300, 100
	var onB []*wsClient
	for range 2 {
		wc := dialHub(t, hB.url)
		wc.subscribe(room, nil)
		onB = append(onB, wc)
	}
	onC := dialHub(t, hC.url)
	onC.subscribe(room, nil)

	killed := make(chan struct{})
	t0 := time.Now()
	pub := startPublisher(a.b, room, n, 2*time.Millisecond, map[int]func(){killAt: func() {
		// Concurrently with the publishing.
		go func() {
			hB.kill()
			c.kill(b)
			close(killed)
		}()
	}})
	<-killed
	t.Logf("B killed after %v", time.Since(t0).Round(time.Millisecond))
	for i, old := range onB {
		select {
		case <-old.done:
		case <-time.After(10 * time.Second):
			t.Fatal("B's client still connected")
		}
		got := old.pubs(room)
		if len(got) == 0 {
			t.Fatalf("client %d of B got nothing before the kill", i)
		}
		last := got[len(got)-1]
		since := hub.Position{Offset: last.Offset, Epoch: last.Epoch}
		wc := dialHub(t, hC.url)
		res := wc.subscribe(room, &since)
		if res.Recovered == nil || !*res.Recovered {
			t.Fatalf("client %d of B could not recover on C from %+v", i, since)
		}
		before := append(got, res.Publications...)
		after := wc.waitTotal(room, n, len(before))
		checkSequence(t, fmt.Sprintf("client %d of B, then C (%d on B, %d recovered)", i, len(got), len(res.Publications)), append(before, after...), pub.wait(t))
	}
	want := pub.wait(t)
	t.Logf("all published after %v", time.Since(t0).Round(time.Millisecond))
	checkSequence(t, "client of C", onC.waitTotal(room, n, 0), want)

	// History through the two nodes left.
	for _, nd := range []*cnode{a, cc} {
		h := history(t, nd.b, room, hub.HistoryQuery{Limit: n})
		if len(h.Publications) != n || h.Latest != want[n-1] {
			t.Fatalf("history through %s without B: %d publications, latest %+v", nd.name, len(h.Publications), h.Latest)
		}
		rec := history(t, nd.b, room, hub.HistoryQuery{Since: &want[killAt-10], Limit: n})
		if len(rec.Publications) != n-killAt+9 || rec.Publications[0].Position != want[killAt-9] {
			t.Fatalf("recovery through %s without B: %d publications", nd.name, len(rec.Publications))
		}
	}
	info := c.info(a)
	t.Logf("B killed at %d: %d publish errors retried; leader now %s; hub C %+v", killAt, pub.errs, info.Cluster.Leader, hC.h.Stats())

	// B again, on its directory. A client on B recovers from a position of
	// before the kill at once, while B's replica may still be catching up
	// (and answering direct gets, from 90% on); the replica catches up.
	t0 = time.Now()
	c.restart(b)
	t.Logf("B restarted in %v", time.Since(t0).Round(time.Millisecond))
	hB2 := startKillableHub(t, b.b)
	wc := dialHub(t, hB2.url)
	res := wc.subscribe(room, &want[killAt-50])
	if res.Recovered == nil || !*res.Recovered || len(res.Publications) != n-killAt+49 || res.Position != want[n-1] {
		t.Fatalf("on B restarted: recovered %v, %d publications, position %+v", res.Recovered, len(res.Publications), res.Position)
	}
	checkSequenceFrom(t, "recovered on B restarted", res.Publications, want[killAt-49:], killAt-49)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, ok := localState(t, b, "DUPLEX")
		lead := c.info(a).State
		if ok && st.LastSeq == lead.LastSeq && st.Msgs == lead.Msgs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's replica did not catch up: %+v, leader %+v", st, lead)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("B's replica caught up %v after the restart", time.Since(t0).Round(time.Millisecond))
	if h := history(t, b.b, room, hub.HistoryQuery{Limit: n}); len(h.Publications) != n {
		t.Fatalf("history through B restarted: %d", len(h.Publications))
	}
}

// The stream's leader changes three times while A publishes: clients on
// all three nodes get every publication once, in order, with no reset.
func TestClusterLeaderChange(t *testing.T) {
	c := newCluster(t, 3, Options{Replicas: 3})
	a := c.node("A")
	const room, n = "feed", 300
	var hubs []*killableHub
	var clients []*wsClient
	for _, nd := range c.nodes {
		kh := startKillableHub(t, nd.b)
		hubs = append(hubs, kh)
		wc := dialHub(t, kh.url)
		wc.subscribe(room, nil)
		clients = append(clients, wc)
	}
	var leaders []string
	var stepErr error
	var steps sync.WaitGroup
	var stepMu sync.Mutex // one step down at a time
	step := func() {
		// Concurrently with the publishing: the new leader is elected
		// while publishes are in flight.
		steps.Go(func() {
			stepMu.Lock()
			t0 := time.Now()
			l, err := c.stepDown(a, "")
			leaders = append(leaders, fmt.Sprintf("%s in %v", l, time.Since(t0).Round(time.Millisecond)))
			stepErr = errors.Join(stepErr, err)
			stepMu.Unlock()
		})
	}
	pub := startPublisher(a.b, room, n, time.Millisecond, map[int]func(){75: step, 150: step, 225: step})
	want := pub.wait(t)
	steps.Wait()
	if stepErr != nil {
		t.Fatal(stepErr)
	}
	for i, wc := range clients {
		checkSequence(t, "client on "+c.nodes[i].name, wc.waitTotal(room, n, 0), want)
	}
	for i, kh := range hubs {
		if s := kh.h.Stats(); s.Resets != 0 {
			t.Fatalf("hub on %s reset %d rooms", c.nodes[i].name, s.Resets)
		}
	}
	var repairs []uint64
	for _, kh := range hubs {
		repairs = append(repairs, kh.h.Stats().Repairs)
	}
	t.Logf("leaders %v; %d publish errors retried; gaps repaired per hub %v", leaders, pub.errs, repairs)
}
