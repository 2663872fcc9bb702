package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// buildDuplex builds the duplex binary into a temporary directory, as
// TestSIGTERM does, and returns its path.
func buildDuplex(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "duplex")
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// node is one duplex process of a cluster.
type node struct {
	name    string // its -nats-name
	addr    string // where it serves HTTP, from its "listening" line
	natsURL string // its embedded NATS server's client listener (-nats-listen)
	logs    *logSink
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process is reaped
	waitErr error         // the process's end, once exited is closed
}

// kill sends SIGKILL and waits for the process to be reaped.
func (n *node) kill() {
	n.cmd.Process.Kill()
	<-n.exited
}

// startNodes starts n duplex processes of bin as one cluster of embedded
// NATS servers with R3 history, all at once (each waits for the cluster's
// JetStream), and returns them once every one listens. The processes are
// killed at the end of the test, whatever happened.
func startNodes(t *testing.T, bin string, n int) []*node {
	t.Helper()
	routes := freeAddrs(t, n)
	clients := freeAddrs(t, n)
	nodes := make([]*node, n)
	for i := range n {
		dir := t.TempDir() // before the Cleanup below: removed after the kill
		nd := &node{name: fmt.Sprintf("n%d", i), natsURL: "nats://" + clients[i], logs: newLogSink(), exited: make(chan struct{})}
		nd.cmd = exec.Command(bin, "-addr", "127.0.0.1:0", "-data-dir", dir,
			"-nats-cluster", routes[i], "-nats-routes", strings.Join(routes, ","),
			"-nats-name", nd.name, "-nats-replicas", "3", "-nats-listen", clients[i])
		nd.cmd.Env = append(os.Environ(), "DUPLEX_LOG_LEVEL=info")
		nd.cmd.Stdout, nd.cmd.Stderr = nd.logs, nd.logs
		if err := nd.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			nd.waitErr = nd.cmd.Wait()
			close(nd.exited)
		}()
		t.Cleanup(nd.kill)
		nodes[i] = nd
	}
	deadline := time.After(90 * time.Second)
	for _, nd := range nodes {
		select {
		case nd.addr = <-nd.logs.listening:
		case <-nd.exited:
			t.Fatalf("node %s exited before listening: %v\n%s", nd.name, nd.waitErr, nd.logs)
		case <-deadline:
			t.Fatalf("node %s did not listen within 90s:\n%s", nd.name, nd.logs)
		}
	}
	return nodes
}

// streamLeader returns the name of the server that leads the rooms' stream,
// asked through a node's NATS client listener.
func streamLeader(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := js.Stream(ctx, "DUPLEX")
		if err == nil {
			if info := s.CachedInfo(); info.Cluster != nil && info.Cluster.Leader != "" {
				return info.Cluster.Leader
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no leader for the stream DUPLEX: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// killScale sizes TestKillNodeMidStream.
type killScale struct {
	perRoom     int           // publications per room
	interval    time.Duration // between two publishes of one publisher
	subsPerNode int           // subscribers on each of B and C
}

// TestKillNodeMidStream is issue 11's first "must show": three duplex
// processes with clustered embedded NATS and R3 history; publishers on node
// A publish numbered messages, with idempotency keys, into 2 rooms;
// subscribers on B and C; B is killed with SIGKILL in the middle of the
// stream (B is the node that leads the rooms' stream, so that its loss
// costs an election); B's clients reconnect to C and recover from their last
// positions. Every subscriber must get every publication of its rooms
// exactly once and in order, at the offset its publisher was acknowledged,
// and every recovery must succeed.
//
// The short variant (2 x 200 publications, 10 subscribers per node) always
// runs unless -short; DUPLEX_LONG=1 runs 2 x 1500 with 20 per node.
func TestKillNodeMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs 3 processes")
	}
	scale := killScale{perRoom: 200, interval: 25 * time.Millisecond, subsPerNode: 10}
	if os.Getenv("DUPLEX_LONG") == "1" {
		scale = killScale{perRoom: 1500, interval: 25 * time.Millisecond, subsPerNode: 20}
	}
	bin := buildDuplex(t)
	start := time.Now()
	nodes := startNodes(t, bin, 3)
	t.Logf("3 nodes listening after %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// B is the stream's leader; A and C the two others. Every node must
	// name the same leader: a member that is not the leader may answer
	// stream info with a view of its own.
	var leader string
	for leader == "" {
		l0 := streamLeader(t, ctx, nodes[0].natsURL)
		if streamLeader(t, ctx, nodes[1].natsURL) == l0 && streamLeader(t, ctx, nodes[2].natsURL) == l0 {
			leader = l0
		}
	}
	var a, b, c *node
	for _, nd := range nodes {
		switch {
		case nd.name == leader:
			b = nd
		case a == nil:
			a = nd
		default:
			c = nd
		}
	}
	if b == nil {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}
	t.Logf("A=%s (%s) publishers, B=%s (%s) stream leader, killed, C=%s (%s)", a.name, a.addr, b.name, b.addr, c.name, c.addr)
	dumpLogs := func() {
		for _, nd := range nodes {
			t.Logf("--- log of %s ---\n%s", nd.name, nd.logs)
		}
	}

	rooms := []string{"kill-a", "kill-b"}
	var killed atomic.Bool
	var subs []*killSub
	for i := range 2 * scale.subsPerNode {
		home := b
		if i >= scale.subsPerNode {
			home = c
		}
		// Rooms: the first, the second or both, in turn.
		my := [][]string{{rooms[0]}, {rooms[1]}, rooms}[i%3]
		s := &killSub{id: i, home: home.name, rooms: my, want: scale.perRoom,
			last: map[string]hub.Position{}, got: map[string][]killRec{}}
		s.addr = func() string {
			if home == b && killed.Load() {
				return c.addr
			}
			return home.addr
		}
		subs = append(subs, s)
	}

	// Subscribe everyone before the first publication.
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	var subscribed, finished sync.WaitGroup
	for _, s := range subs {
		subscribed.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			s.run(subCtx, subscribed.Done)
		}()
	}
	waitGroup := func(wg *sync.WaitGroup, d time.Duration) bool {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			return true
		case <-time.After(d):
			subCancel() // ends the subscribers, and so the waiting goroutine
			<-done
			return false
		}
	}
	if !waitGroup(&subscribed, testTimeout) {
		for _, s := range subs {
			t.Logf("subscriber %d: %s", s.id, strings.Join(s.errs, "; "))
		}
		t.Fatal("subscribers did not subscribe")
	}

	// Publishers: one connection per room on A.
	pubs := make([]*killPub, len(rooms))
	var killAt time.Time
	killNow := make(chan struct{})
	var killOnce sync.Once
	var pubWG sync.WaitGroup
	for i, room := range rooms {
		p := &killPub{room: room, addr: a.addr, n: scale.perRoom, interval: scale.interval, acked: make([]uint64, scale.perRoom+1)}
		pubs[i] = p
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			p.run(ctx, func(n int) {
				if n == scale.perRoom/2 {
					killOnce.Do(func() { close(killNow) })
				}
			})
		}()
	}
	pubsDone := make(chan struct{})
	go func() { pubWG.Wait(); close(pubsDone) }()
	select {
	case <-killNow:
		killAt = time.Now()
		killed.Store(true) // before the kill: B's clients reconnect to C
		b.cmd.Process.Kill()
		<-b.exited
		t.Logf("killed %s (SIGKILL) at %v into the stream: %v", b.name, killAt.Sub(pubs[0].started).Round(time.Millisecond), b.waitErr)
	case <-pubsDone:
	}
	<-pubsDone
	pubEnd := time.Now()
	for _, p := range pubs {
		if p.err != nil {
			dumpLogs()
			t.Fatalf("publisher of %s: %v", p.room, p.err)
		}
	}
	if killAt.IsZero() {
		t.Fatal("the publishers ended before the kill")
	}
	t.Logf("stream leader after the kill: %s", streamLeader(t, ctx, c.natsURL))

	// Every subscriber ends once it has every publication of its rooms.
	if !waitGroup(&finished, 30*time.Second) {
		t.Errorf("subscribers not done 30s after the last publication")
	}
	t.Logf("all subscribers done %v after the last publication", time.Since(pubEnd).Round(time.Millisecond))

	// The invariant.
	failed := false
	for _, s := range subs {
		for _, e := range s.errs {
			t.Errorf("subscriber %d (home %s): %s", s.id, s.home, e)
			failed = true
		}
		for _, room := range s.rooms {
			acked := pubs[slices.Index(rooms, room)].acked
			got := s.got[room]
			if len(got) != scale.perRoom {
				t.Errorf("subscriber %d (home %s), room %s: %d publications, want %d", s.id, s.home, room, len(got), scale.perRoom)
				failed = true
			}
			for i, r := range got {
				if r.n != i+1 || r.offset != acked[r.n] {
					t.Errorf("subscriber %d (home %s), room %s: publication #%d is n=%d offset %d, want n=%d offset %d (acknowledged)",
						s.id, s.home, room, i+1, r.n, r.offset, i+1, acked[min(i+1, scale.perRoom)])
					failed = true
					break
				}
			}
		}
	}

	// Timings.
	retries := map[string]int{}
	var maxLat time.Duration
	var maxLatN int
	var maxGap time.Duration
	for _, p := range pubs {
		for k, v := range p.retries {
			retries[k] += v
		}
		if p.maxLatency > maxLat {
			maxLat, maxLatN = p.maxLatency, p.maxLatencyN
		}
		maxGap = max(maxGap, p.maxGap)
	}
	t.Logf("published %d x %d in %v; slowest publish %v (n=%d); longest gap between acknowledgements %v; retried publishes: %v",
		len(rooms), scale.perRoom, pubEnd.Sub(pubs[0].started).Round(time.Millisecond), maxLat.Round(time.Millisecond), maxLatN,
		maxGap.Round(time.Millisecond), retries)
	var recov []time.Duration
	var reconnects, recoveries, recoveredPubs, cSubReconnects int
	for _, s := range subs {
		reconnects += s.reconnects
		recoveries += s.recoveries
		recoveredPubs += s.recoveredPubs
		recov = append(recov, s.recoverTook...)
		if s.home == c.name {
			cSubReconnects += s.reconnects
		}
	}
	for _, s := range subs {
		if len(s.disconnects) > 0 || len(s.sessionErrs) > 0 {
			t.Logf("subscriber %d (home %s): disconnect pushes %q; failed sessions %d, last: %s",
				s.id, s.home, s.disconnects, len(s.sessionErrs), s.sessionErrs[max(len(s.sessionErrs)-1, 0):])
		}
	}
	slices.Sort(recov)
	if len(recov) > 0 {
		t.Logf("%d reconnects (%d of C's own subscribers), %d rooms recovered with %d publications in all; time from disconnect to all rooms recovered: min %v, median %v, max %v",
			reconnects, cSubReconnects, recoveries, recoveredPubs, recov[0].Round(time.Millisecond), recov[len(recov)/2].Round(time.Millisecond), recov[len(recov)-1].Round(time.Millisecond))
	}
	for _, nd := range []*node{a, c} {
		if lines := nd.logs.linesWith("level=WARN"); len(lines) > 0 {
			t.Logf("%s warnings:\n%s", nd.name, strings.Join(lines, "\n"))
		}
		if lines := nd.logs.linesWith("level=ERROR"); len(lines) > 0 {
			t.Logf("%s errors:\n%s", nd.name, strings.Join(lines, "\n"))
		}
	}
	if failed {
		dumpLogs()
	} else {
		n := 0
		for _, s := range subs {
			n += len(s.rooms)
		}
		t.Logf("invariant holds: %d subscriptions on %d subscribers, each got its room's %d publications exactly once, in order, at the acknowledged offsets",
			n, len(subs), scale.perRoom)
	}
}

// killRec is one publication as a subscriber got it.
type killRec struct {
	n      int
	offset uint64
}

// killSub is a subscriber of TestKillNodeMidStream: it subscribes to its
// rooms on addr(), reads until it has want publications in each, and after
// any disconnect reconnects (to addr() again) and recovers every room from
// its last position. errs collects what broke the protocol's promises.
type killSub struct {
	id    int
	home  string
	addr  func() string
	rooms []string
	want  int

	last          map[string]hub.Position
	got           map[string][]killRec
	errs          []string
	reconnects    int
	recoveries    int
	recoveredPubs int             // publications received in subscribe replies after a since
	disconnects   []string        // disconnect pushes received
	sessionErrs   []string        // failed attempts to dial, connect or subscribe
	recoverTook   []time.Duration // from a disconnect to every room recovered
}

func (s *killSub) done() bool {
	for _, r := range s.rooms {
		if len(s.got[r]) < s.want {
			return false
		}
	}
	return true
}

func (s *killSub) fail(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// pub takes one publication of room, live or recovered.
func (s *killSub) pub(room string, offset uint64, epoch string, data json.RawMessage, how string) {
	last := s.last[room]
	if epoch != last.Epoch {
		s.fail("%s publication in room %s at offset %d in epoch %s, after epoch %s", how, room, offset, epoch, last.Epoch)
	}
	if offset <= last.Offset {
		s.fail("%s publication in room %s at offset %d, not after the last position %d: a duplicate", how, room, offset, last.Offset)
	}
	var d struct{ N int }
	if err := json.Unmarshal(data, &d); err != nil {
		s.fail("%s publication in room %s at offset %d: data %s: %v", how, room, offset, data, err)
	}
	s.got[room] = append(s.got[room], killRec{n: d.N, offset: offset})
	s.last[room] = hub.Position{Offset: offset, Epoch: epoch}
}

// push handles a push message.
func (s *killSub) push(data []byte) {
	var m struct {
		Push   string
		Room   string
		Offset uint64
		Epoch  string
		Data   json.RawMessage
		Code   int
		Reason string
	}
	if err := json.Unmarshal(data, &m); err != nil {
		s.fail("push %s: %v", data, err)
		return
	}
	switch m.Push {
	case "pub":
		if !slices.Contains(s.rooms, m.Room) {
			s.fail("a publication of room %s, not subscribed", m.Room)
			return
		}
		s.pub(m.Room, m.Offset, m.Epoch, m.Data, "live")
	case "disconnect":
		// Not a failure in itself (the reconnect and its recovery follow),
		// but worth reporting: the node gave up on its live stream.
		s.disconnects = append(s.disconnects, fmt.Sprintf("%d %s", m.Code, m.Reason))
	}
}

// run connects and subscribes until done or ctx ends; subscribed is called
// once, after the first subscriptions.
func (s *killSub) run(ctx context.Context, subscribed func()) {
	var once sync.Once
	defer once.Do(subscribed)
	var lostAt time.Time
	for ctx.Err() == nil && !s.done() {
		c, err := s.session(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, errRefused) {
				s.sessionErrs = append(s.sessionErrs, err.Error())
				time.Sleep(50 * time.Millisecond) // the node may be gone: try again
				continue
			}
			return
		}
		if !lostAt.IsZero() {
			s.recoverTook = append(s.recoverTook, time.Since(lostAt))
		}
		once.Do(subscribed)
		for !s.done() {
			msg, err := c.Read(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.reconnects++
					lostAt = time.Now()
				}
				break
			}
			s.push(msg.Data)
		}
		if s.done() {
			c.Close(websocket.StatusNormalClosure, "")
		}
		c.CloseNow()
	}
	if !s.done() && ctx.Err() != nil {
		s.fail("gave up: %v", ctx.Err())
	}
}

// errRefused is a recovery refused: the subscriber stops.
var errRefused = errors.New("recovery refused")

// session dials, connects and subscribes to every room, recovering from the
// last positions.
func (s *killSub) session(ctx context.Context) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(dctx, "ws://"+s.addr()+"/chat/hub", &websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}})
	if err != nil {
		return nil, err
	}
	id := 1
	call := func(cmd map[string]any) (json.RawMessage, error) {
		cmd["id"] = id
		id++
		return killCall(dctx, c, cmd, s.push)
	}
	if _, err := call(map[string]any{"op": "connect", "data": map[string]string{"name": fmt.Sprintf("sub%d", s.id)}}); err != nil {
		c.CloseNow()
		return nil, err
	}
	for _, room := range s.rooms {
		cmd := map[string]any{"op": "subscribe", "room": room}
		last, recovering := s.last[room]
		if recovering {
			cmd["since"] = last
		}
		res, err := call(cmd)
		if err != nil {
			c.CloseNow()
			return nil, err
		}
		var r hubSubscribed
		if err := json.Unmarshal(res, &r); err != nil {
			c.CloseNow()
			return nil, err
		}
		if recovering {
			if r.Recovered == nil || !*r.Recovered {
				s.fail("on %s, room %s since %+v: recovered %v (%d publications, position %+v)", s.addr(), room, last, r.Recovered, len(r.Publications), r.Position)
				c.CloseNow()
				return nil, errRefused
			}
			s.recoveries++
			s.recoveredPubs += len(r.Publications)
			for _, p := range r.Publications {
				s.pub(room, p.Offset, p.Epoch, p.Data, "recovered")
			}
			if r.Position.Epoch != s.last[room].Epoch || r.Position.Offset < s.last[room].Offset {
				s.fail("room %s: position %+v after recovering up to %+v", room, r.Position, s.last[room])
			}
		} else if len(r.Publications) > 0 {
			s.fail("room %s: %d publications on a first subscribe without recent", room, len(r.Publications))
		}
		s.last[room] = r.Position
	}
	return c, nil
}

// killCall sends one command and returns its reply's result; pushes that
// come before the reply go to push. An error reply is returned as a
// *hub.Error.
func killCall(ctx context.Context, c *websocket.Conn, cmd map[string]any, push func([]byte)) (json.RawMessage, error) {
	b, _ := json.Marshal(cmd)
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		return nil, err
	}
	for {
		msg, err := c.Read(ctx)
		if err != nil {
			return nil, err
		}
		var r struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *hub.Error      `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return nil, err
		}
		if r.ID == 0 {
			if push != nil {
				push(msg.Data)
			}
			continue
		}
		if r.ID != cmd["id"] {
			return nil, fmt.Errorf("reply %d to command %v", r.ID, cmd["id"])
		}
		if r.Error != nil {
			return nil, r.Error
		}
		return r.Result, nil
	}
}

// killPub publishes {"n": 1..n} into its room on addr, one every interval,
// each with the key room-n; an error reply (503 during an election, 429)
// or a lost connection retries the same key until it is accepted.
type killPub struct {
	room     string
	addr     string
	n        int
	interval time.Duration

	started     time.Time
	acked       []uint64 // offset of n, by n
	retries     map[string]int
	maxLatency  time.Duration // of a publish, from its first try to its acknowledgement
	maxLatencyN int
	maxGap      time.Duration // between two acknowledgements
	err         error
}

func (p *killPub) run(ctx context.Context, progress func(n int)) {
	p.retries = map[string]int{}
	p.started = time.Now()
	var c *websocket.Conn
	defer func() {
		if c != nil {
			c.CloseNow()
		}
	}()
	id := 0
	lastAck := p.started
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for n := 1; n <= p.n; n++ {
		first := time.Now()
		for {
			if ctx.Err() != nil {
				p.err = fmt.Errorf("publication %d: %w", n, ctx.Err())
				return
			}
			if c == nil {
				var err error
				if c, _, err = websocket.Dial(ctx, "ws://"+p.addr+"/chat/hub", &websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}}); err != nil {
					p.retries["dial"]++
					time.Sleep(100 * time.Millisecond)
					continue
				}
				id++
				if _, err := killCall(ctx, c, map[string]any{"id": id, "op": "connect", "data": map[string]string{"name": "pub-" + p.room}}, nil); err != nil {
					p.err = fmt.Errorf("connect: %w", err)
					return
				}
			}
			id++
			res, err := killCall(ctx, c, map[string]any{"id": id, "op": "publish", "room": p.room,
				"key": fmt.Sprintf("%s-%d", p.room, n), "data": map[string]int{"n": n}}, nil)
			var he *hub.Error
			if errors.As(err, &he) {
				p.retries[fmt.Sprint(he.Code)]++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if err != nil {
				p.retries["connection"]++
				c.CloseNow()
				c = nil
				continue
			}
			var r struct{ Position hub.Position }
			if err := json.Unmarshal(res, &r); err != nil || r.Position.Offset == 0 {
				p.err = fmt.Errorf("publication %d: result %s: %v", n, res, err)
				return
			}
			p.acked[n] = r.Position.Offset
			break
		}
		now := time.Now()
		if d := now.Sub(first); d > p.maxLatency {
			p.maxLatency, p.maxLatencyN = d, n
		}
		p.maxGap = max(p.maxGap, now.Sub(lastAck))
		lastAck = now
		progress(n)
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}
