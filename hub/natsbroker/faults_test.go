package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/internal/toxitest"
	"github.com/duplexws/duplex/websocket"
	"github.com/nats-io/nats.go"
)

// Network faults, made by Toxiproxy (in this process) on real TCP: between
// a node and NATS, and between clients and a node. Two nodes, A and B,
// each a broker and a hub on a real HTTP server, share one nats-server
// that listens on loopback. A reaches NATS through the proxy "nats-a", and
// A's clients reach A through the proxy "ws-a"; B and its clients are
// direct. A WebSocket client on each node publishes 0..n-1 to a room of
// its own ("from-a", "from-b"), each publish with a key, and sends a
// publish again, with the same key, when its reply does not come or is an
// error; subscribers on both nodes follow both rooms and, when their
// connection ends, reconnect and subscribe again from their last
// positions. One fault is made in the middle of the stream, and healed:
//
//   - latency on the way (both directions, with jitter);
//   - a dropped connection (reset_peer: the peer sees a TCP RST);
//   - a partition that heals: the proxy down (connections closed, new
//     ones refused) for a while;
//   - a blackhole that heals (the timeout toxic: the connection stays up
//     and carries nothing), which the peer notices only by its own pings:
//     the NATS client's PingInterval, the WebSocket client's keepalive.
//
// While A is cut off from NATS it must refuse publishes with
// ErrNotConnected (a 503 to its clients) and report not ready, and after
// the heal its subscribers catch up. The invariant, checked by
// checkSequence on every subscriber and room: every publication the
// publishers had acknowledged arrives exactly once, in order, at the
// positions the publishers were given; every subscribe again says
// recovered. The CI variant is short; DUPLEX_LONG=1 publishes more and
// holds each fault longer.

const (
	roomFromA = "from-a"
	roomFromB = "from-b"
)

// faultScale is how many publications each publisher makes and how long a
// fault is held.
func faultScale() (n int, hold time.Duration) {
	if os.Getenv("DUPLEX_LONG") == "1" {
		return 300, 5 * time.Second
	}
	return 30, time.Second
}

// natsPings lets A's NATS client notice a blackholed connection (one that
// stays up and carries nothing) in 1.5 to 2s; the client's default (2
// minutes, 2 pings) takes minutes. It stays well above the round trip of
// the latency fault.
var natsPings = []nats.Option{
	nats.PingInterval(500 * time.Millisecond),
	nats.MaxPingsOutstanding(3),
	nats.ReconnectWait(50 * time.Millisecond),
	nats.ReconnectJitter(0, 0),
	nats.Timeout(time.Second),
}

// clientKeepalive is the keepalive of A's WebSocket clients: the only way
// they notice a blackholed connection. Its pong timeout is above the round
// trip of the latency fault.
var clientKeepalive = websocket.Options{PingInterval: 300 * time.Millisecond, PongTimeout: time.Second}

// faultRig is the two nodes, their clients' addresses and the proxies.
type faultRig struct {
	t        testing.TB
	srv      *Server
	natsA    *toxiclient.Proxy // A's NATS connection goes through it
	wsA      *toxiclient.Proxy // A's clients go through it
	ncA      *nats.Conn
	bA, bB   *Broker
	hA, hB   *hub.Hub
	urlA     string             // hub A through wsA
	urlB     string             // hub B, direct
	subsA    []*faultSubscriber // A's subscribers, which client faults wait for
	stop     chan struct{}
	stopOnce sync.Once
}

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	srv, err := StartServer(ServerOptions{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	tox := toxitest.Start(t)
	r := &faultRig{t: t, srv: srv, stop: make(chan struct{})}
	t.Cleanup(r.halt)
	opts := Options{Memory: true, Timeout: 2 * time.Second}

	r.natsA = tox.Proxy(t, "nats-a", strings.TrimPrefix(srv.ClientURL(), "nats://"))
	if r.ncA, err = Connect("nats://"+r.natsA.Listen, natsPings...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.ncA.Close)
	if r.bA, err = New(context.Background(), r.ncA, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.bA.Close() })
	ncB, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncB.Close)
	if r.bB, err = New(context.Background(), ncB, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.bB.Close() })

	var urlA string
	r.hA, urlA = startHub(t, r.bA, hub.Options{})
	r.hB, r.urlB = startHub(t, r.bB, hub.Options{})
	r.wsA = tox.Proxy(t, "ws-a", strings.TrimPrefix(urlA, "ws://"))
	r.urlA = "ws://" + r.wsA.Listen
	return r
}

// halt stops the clients' reconnecting.
func (r *faultRig) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

// dialerA and dialerB reach hub A through its proxy, with keepalive, and
// hub B directly.
func (r *faultRig) dialerA() *faultDialer {
	return &faultDialer{t: r.t, url: r.urlA, opts: &websocket.DialOptions{HandshakeTimeout: time.Second, Options: clientKeepalive}, stop: r.stop}
}

func (r *faultRig) dialerB() *faultDialer {
	return &faultDialer{t: r.t, url: r.urlB, stop: r.stop}
}

// faultDialer dials a hub again and again, until it gets a connected
// client or stop is closed.
type faultDialer struct {
	t    testing.TB
	url  string
	opts *websocket.DialOptions
	stop chan struct{}
}

func (d *faultDialer) dial() *wsClient {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		wc, err := tryDialHub(ctx, d.t, d.url, d.opts)
		cancel()
		if err == nil {
			return wc
		}
		select {
		case <-d.stop:
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// wsPublisher is a publisher (see startPublisher) that publishes through
// a hub's WebSocket protocol, as a client would.
type wsPublisher struct {
	*publisher
	refused    int // replies 503: the node could not reach its broker
	reconnects int
	ends       []string // why the calls failed that made it reconnect
}

// startWSPublisher publishes 0..n-1 to room through d, each with the key
// k<i>, every gap. A publish whose reply does not come (the connection
// ended, or 10s passed) is sent again on a new connection; one answered
// with an error is sent again on the same connection: with the same key
// both times, so that a publish stored before its reply was lost is not
// stored twice. at[i] runs before publication i.
func startWSPublisher(d *faultDialer, room string, n int, gap time.Duration, at map[int]func()) *wsPublisher {
	p := &wsPublisher{publisher: &publisher{done: make(chan struct{})}}
	go func() {
		defer close(p.done)
		var wc *wsClient
		defer func() {
			if wc != nil {
				wc.c.CloseNow()
			}
		}()
		p.run(n, gap, at, func(i int) (hub.Position, error) {
			if wc == nil {
				if wc = d.dial(); wc == nil {
					return hub.Position{}, errStopPublishing
				}
				if i > 0 {
					p.mu.Lock()
					p.reconnects++
					p.mu.Unlock()
				}
			}
			m, err := wc.tryCall(map[string]any{"op": "publish", "room": room, "data": i, "key": fmt.Sprint("k", i)})
			if err != nil {
				p.mu.Lock()
				p.ends = append(p.ends, err.Error())
				p.mu.Unlock()
				wc.c.CloseNow()
				wc = nil
				return hub.Position{}, err
			}
			if m.Error != nil {
				if m.Error.Code == hub.CodeUnavailable {
					p.mu.Lock()
					p.refused++
					p.mu.Unlock()
				}
				return hub.Position{}, m.Error
			}
			var res struct{ Position hub.Position }
			if err := json.Unmarshal(m.Result, &res); err != nil {
				return hub.Position{}, fmt.Errorf("%w: %v", errStopPublishing, err)
			}
			return res.Position, nil
		})
	}()
	return p
}

func (p *wsPublisher) acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pos)
}

func (p *wsPublisher) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%d acknowledged, %d retried (%d refused with 503), %d reconnects %q", len(p.pos), p.errs, p.refused, p.reconnects, p.ends)
}

// faultSubscriber follows rooms through reconnects: when its connection
// ends it dials again and subscribes to each room from the last position
// it holds, as PROTOCOL.md asks of a client. It keeps everything
// delivered, across connections, in order.
type faultSubscriber struct {
	name  string
	d     *faultDialer
	rooms []string
	done  chan struct{}

	mu           sync.Mutex
	got          map[string][]wsMsg       // from the connections before cur
	last         map[string]*hub.Position // the last position of each room
	cur          *wsClient                // the connection now
	curRooms     []string                 // the rooms subscribed on cur
	reconnects   int                      // connections after the first
	ends         map[string]int           // how the connections ended
	end          string                   // how the last one ended
	notRecovered []string                 // subscribes again that did not recover
}

func startSubscriber(name string, d *faultDialer, rooms ...string) *faultSubscriber {
	s := &faultSubscriber{
		name: name, d: d, rooms: rooms, done: make(chan struct{}),
		got: map[string][]wsMsg{}, last: map[string]*hub.Position{}, ends: map[string]int{},
	}
	go s.run()
	return s
}

func (s *faultSubscriber) run() {
	defer close(s.done)
	for first := true; ; first = false {
		wc := s.d.dial()
		if wc == nil {
			return
		}
		if !first {
			s.mu.Lock()
			s.reconnects++
			s.mu.Unlock()
		}
		s.subscribeAll(wc)
		select {
		case <-wc.done:
		case <-s.d.stop:
			wc.c.CloseNow()
			<-wc.done
		}
		s.commit(wc)
		select {
		case <-s.d.stop:
			return
		default:
		}
	}
}

// subscribeAll subscribes wc to every room; on a failure it closes wc,
// and run dials again.
func (s *faultSubscriber) subscribeAll(wc *wsClient) {
	s.mu.Lock()
	s.cur, s.curRooms = wc, nil
	s.mu.Unlock()
	for _, room := range s.rooms {
		cmd := map[string]any{"op": "subscribe", "room": room}
		s.mu.Lock()
		since := s.last[room]
		s.mu.Unlock()
		if since != nil {
			cmd["since"] = *since
		}
		m, err := wc.tryCall(cmd)
		if err == nil && m.Error != nil {
			err = m.Error
		}
		var res wsSubResult
		if err == nil {
			err = json.Unmarshal(m.Result, &res)
		}
		if err != nil {
			wc.c.CloseNow()
			return
		}
		s.mu.Lock()
		if since != nil && (res.Recovered == nil || !*res.Recovered) {
			s.notRecovered = append(s.notRecovered, fmt.Sprintf("%s since %+v", room, *since))
		}
		s.got[room] = append(s.got[room], res.Publications...)
		pos := res.Position
		s.last[room] = &pos
		s.curRooms = append(s.curRooms, room)
		s.mu.Unlock()
	}
}

// commit moves what the connection that ended delivered to got.
func (s *faultSubscriber) commit(wc *wsClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, room := range s.curRooms {
		ps := wc.pubs(room)
		s.got[room] = append(s.got[room], ps...)
		if len(ps) > 0 {
			l := ps[len(ps)-1]
			s.last[room] = &hub.Position{Offset: l.Offset, Epoch: l.Epoch}
		}
	}
	wc.mu.Lock()
	end := "no error"
	if wc.err != nil {
		end = wc.err.Error()
	}
	wc.mu.Unlock()
	s.ends[end]++
	s.end = end
	s.cur, s.curRooms = nil, nil
}

// lastEnd is how s's last connection ended.
func (s *faultSubscriber) lastEnd() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// endedCount is how many of s's connections have ended.
func (s *faultSubscriber) endedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.ends {
		n += k
	}
	return n
}

// delivered is everything the room delivered to s so far, in order.
func (s *faultSubscriber) delivered(room string) []wsMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.got[room])
	if s.cur != nil && slices.Contains(s.curRooms, room) {
		out = append(out, s.cur.pubs(room)...)
	}
	return out
}

// waitDelivered waits until s holds n publications of room, or 30s pass.
func (s *faultSubscriber) waitDelivered(room string, n int) []wsMsg {
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.delivered(room)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *faultSubscriber) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ends []string
	for e, k := range s.ends {
		ends = append(ends, fmt.Sprintf("%dx %q", k, e))
	}
	slices.Sort(ends)
	return fmt.Sprintf("%s: %d reconnects (ends: %s)", s.name, s.reconnects, strings.Join(ends, ", "))
}

// faultReport is what a fault measured, for the log.
type faultReport struct {
	mu     sync.Mutex
	notes  []string
	errs   []error
	healed time.Time // when the fault was healed
}

func (fr *faultReport) heal() {
	fr.mu.Lock()
	fr.healed = time.Now()
	fr.mu.Unlock()
}

func (fr *faultReport) note(format string, args ...any) {
	fr.mu.Lock()
	fr.notes = append(fr.notes, fmt.Sprintf(format, args...))
	fr.mu.Unlock()
}

func (fr *faultReport) fail(format string, args ...any) {
	fr.mu.Lock()
	fr.errs = append(fr.errs, fmt.Errorf(format, args...))
	fr.mu.Unlock()
}

// A fault runs on its own goroutine, in the middle of the stream: it
// breaks something, holds, heals, and says what it measured.
type fault func(r *faultRig, fr *faultReport, hold time.Duration)

func addToxic(fr *faultReport, p *toxiclient.Proxy, name, typ, stream string, attrs toxiclient.Attributes) {
	if _, err := p.AddToxic(name, typ, stream, 1, attrs); err != nil {
		fr.fail("adding %s to %s: %v", name, p.Name, err)
	}
}

func removeToxic(fr *faultReport, p *toxiclient.Proxy, name string) {
	if err := p.RemoveToxic(name); err != nil {
		fr.fail("removing %s from %s: %v", name, p.Name, err)
	}
}

// latency delays both directions through p by 150ms, give or take 100.
func latency(p func(*faultRig) *toxiclient.Proxy) fault {
	return func(r *faultRig, fr *faultReport, hold time.Duration) {
		px := p(r)
		for _, dir := range []string{"upstream", "downstream"} {
			addToxic(fr, px, "latency-"+dir, "latency", dir, toxiclient.Attributes{"latency": 150, "jitter": 100})
		}
		time.Sleep(hold)
		for _, dir := range []string{"upstream", "downstream"} {
			removeToxic(fr, px, "latency-"+dir)
		}
		fr.heal()
	}
}

// cutOff is a fault that separates A from NATS (cut) until heal; while A
// is cut off its broker must refuse publishes with ErrNotConnected and
// report not ready. The fault is held from when A's NATS client has
// noticed, for hold, or not at all when holds is false: a dropped
// connection.
func cutOff(br breakage, holds bool) fault {
	return func(r *faultRig, fr *faultReport, hold time.Duration) {
		t0 := time.Now()
		br.cut(r, fr)
		for r.ncA.IsConnected() {
			if time.Since(t0) > 20*time.Second {
				fr.fail("A's NATS client never noticed the fault")
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		fr.note("A's NATS client noticed after %v", time.Since(t0).Round(time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := r.bA.Publish(ctx, "probe", hub.Message{Data: json.RawMessage(`0`)}); !errors.Is(err, ErrNotConnected) {
			fr.fail("publish on A while cut off: %v, want ErrNotConnected", err)
		}
		if err := r.bA.Ready(ctx); !errors.Is(err, ErrNotConnected) {
			fr.fail("A's readiness while cut off: %v, want ErrNotConnected", err)
		}
		if holds {
			time.Sleep(hold)
		}
		br.heal(r, fr)
		fr.heal()
		healed := time.Now()
		for r.bA.Ready(ctx) != nil {
			if time.Since(healed) > 20*time.Second {
				fr.fail("A not ready 20s after the heal")
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		fr.note("A ready %v after the heal", time.Since(healed).Round(time.Millisecond))
	}
}

// clientCut is a fault between A and its clients (cut) until heal. The
// fault is held from when every subscriber of A has seen its connection
// end (so a blackhole is held from when their keepalive noticed it), for
// hold, or not at all when hold is false: a dropped connection. The
// subscribers and the publisher must come back by themselves.
func clientCut(br breakage, holds bool, noticedBy string) fault {
	return func(r *faultRig, fr *faultReport, hold time.Duration) {
		t0 := time.Now()
		ended := make([]int, len(r.subsA))
		for i, s := range r.subsA {
			ended[i] = s.endedCount()
		}
		br.cut(r, fr)
		for i, s := range r.subsA {
			for s.endedCount() == ended[i] {
				if time.Since(t0) > 20*time.Second {
					fr.fail("%s never noticed the fault", s.name)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		fr.note("A's subscribers all noticed after %v", time.Since(t0).Round(time.Millisecond))
		for _, s := range r.subsA {
			if end := s.lastEnd(); !strings.Contains(end, noticedBy) {
				fr.fail("%s's connection ended with %q, want it noticed by %q", s.name, end, noticedBy)
			}
		}
		if holds {
			time.Sleep(hold)
		}
		br.heal(r, fr)
		fr.heal()
	}
}

// breakage is a fault's cut and its heal.
type breakage struct {
	cut, heal func(*faultRig, *faultReport)
}

var (
	natsProxy = func(r *faultRig) *toxiclient.Proxy { return r.natsA }
	wsProxy   = func(r *faultRig) *toxiclient.Proxy { return r.wsA }
)

// resetPeer resets every connection through the proxy as soon as data
// flows, until heal removes the toxic.
func resetPeer(p func(*faultRig) *toxiclient.Proxy) breakage {
	return breakage{func(r *faultRig, fr *faultReport) {
		addToxic(fr, p(r), "reset", "reset_peer", "downstream", toxiclient.Attributes{"timeout": 0})
	}, func(r *faultRig, fr *faultReport) {
		removeToxic(fr, p(r), "reset")
	}}
}

// down disables the proxy: its connections are closed and new ones
// refused, until heal enables it.
func down(p func(*faultRig) *toxiclient.Proxy) breakage {
	return breakage{func(r *faultRig, fr *faultReport) {
		if err := p(r).Disable(); err != nil {
			fr.fail("disabling %s: %v", p(r).Name, err)
		}
	}, func(r *faultRig, fr *faultReport) {
		if err := p(r).Enable(); err != nil {
			fr.fail("enabling %s: %v", p(r).Name, err)
		}
	}}
}

// blackhole drops everything through the proxy, both ways, leaving its
// connections up, until heal removes the toxics (which closes the
// connections that had them).
func blackhole(p func(*faultRig) *toxiclient.Proxy) breakage {
	return breakage{func(r *faultRig, fr *faultReport) {
		for _, dir := range []string{"upstream", "downstream"} {
			addToxic(fr, p(r), "blackhole-"+dir, "timeout", dir, toxiclient.Attributes{"timeout": 0})
		}
	}, func(r *faultRig, fr *faultReport) {
		for _, dir := range []string{"upstream", "downstream"} {
			removeToxic(fr, p(r), "blackhole-"+dir)
		}
	}}
}

func TestFaultsNodeToNATS(t *testing.T) {
	runFaults(t, []faultCase{
		{"latency", latency(natsProxy)},
		{"drop", cutOff(resetPeer(natsProxy), false)},
		{"partition", cutOff(down(natsProxy), true)},
		{"blackhole", cutOff(blackhole(natsProxy), true)},
	})
}

func TestFaultsClientToNode(t *testing.T) {
	runFaults(t, []faultCase{
		{"latency", latency(wsProxy)},
		{"drop", clientCut(resetPeer(wsProxy), false, "")},
		{"partition", clientCut(down(wsProxy), true, "")},
		// The connection stays up: only the client's keepalive tells.
		{"blackhole", clientCut(blackhole(wsProxy), true, "keepalive: no pong")},
	})
}

type faultCase struct {
	name string
	f    fault
}

func runFaults(t *testing.T, cases []faultCase) {
	for _, fc := range cases {
		t.Run(fc.name, func(t *testing.T) { runFault(t, fc.f) })
	}
}

// runFault runs one fault in the middle of the stream and checks the
// invariant.
func runFault(t *testing.T, f fault) {
	n, hold := faultScale()
	r := newFaultRig(t)
	r.subsA = []*faultSubscriber{
		startSubscriber("A1 (through ws-a)", r.dialerA(), roomFromA, roomFromB),
		startSubscriber("A2 (through ws-a)", r.dialerA(), roomFromA, roomFromB),
	}
	subs := append(slices.Clone(r.subsA), startSubscriber("B1 (direct)", r.dialerB(), roomFromA, roomFromB))
	// The publishers start once every subscriber is subscribed to both
	// rooms, so that each is owed all of them.
	for _, s := range subs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.mu.Lock()
			ok := len(s.curRooms) == 2
			s.mu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not subscribe", s.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	fr := &faultReport{}
	faulted := make(chan struct{})
	var pubA, pubB *wsPublisher
	t0 := time.Now()
	pubA = startWSPublisher(r.dialerA(), roomFromA, n, 10*time.Millisecond, nil)
	pubB = startWSPublisher(r.dialerB(), roomFromB, n, 10*time.Millisecond, map[int]func(){n / 4: func() {
		go func() {
			defer close(faulted)
			f(r, fr, hold)
			// Recovery: how long after the heal each subscriber holds
			// what had been acknowledged when the fault was healed.
			ackedA, ackedB := pubA.acked(), pubB.acked()
			for _, s := range subs {
				for len(s.delivered(roomFromA)) < ackedA || len(s.delivered(roomFromB)) < ackedB {
					if time.Since(fr.healed) > 30*time.Second {
						fr.fail("%s: not caught up 30s after the heal", s.name)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				fr.note("%s held the %d + %d publications acknowledged at the heal %v after it", s.name, ackedA, ackedB, time.Since(fr.healed).Round(time.Millisecond))
			}
		}()
	}})
	wantA, wantB := pubA.wait(t), pubB.wait(t)
	<-faulted
	t.Logf("published %d + %d in %v; publisher on A %v; on B %v", n, n, time.Since(t0).Round(time.Millisecond), pubA, pubB)
	for _, e := range fr.errs {
		t.Error(e)
	}
	for _, note := range fr.notes {
		t.Log(note)
	}

	for _, s := range subs {
		gotA, gotB := s.waitDelivered(roomFromA, n), s.waitDelivered(roomFromB, n)
		s.mu.Lock()
		notRecovered := s.notRecovered
		s.mu.Unlock()
		if len(notRecovered) > 0 {
			t.Errorf("%s: resubscribed without recovery: %v", s.name, notRecovered)
		}
		checkSequence(t, s.name+" "+roomFromA, gotA, wantA)
		checkSequence(t, s.name+" "+roomFromB, gotB, wantB)
		t.Logf("%s; delivered %d + %d", s, len(gotA), len(gotB))
	}
	r.halt()
	for _, s := range subs {
		<-s.done
	}
	t.Logf("hub A %+v", r.hA.Stats())
}

// Connect's connections notice a blackholed server (the TCP connection up,
// nothing through) by their pings, in seconds rather than the NATS
// client's default minutes; until they do, the broker reports ready and
// its subscribers silently get nothing. The CI run checks the settings;
// DUPLEX_LONG=1 blackholes a real connection and waits for it to notice.
func TestConnectNoticesBlackhole(t *testing.T) {
	srv, err := StartServer(ServerOptions{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	px := toxitest.Start(t).Proxy(t, "nats", strings.TrimPrefix(srv.ClientURL(), "nats://"))
	nc, err := Connect("nats://" + px.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if limit := nc.Opts.PingInterval * time.Duration(nc.Opts.MaxPingsOut+1); limit > 20*time.Second {
		t.Fatalf("pings every %v, %d unanswered allowed: a blackholed connection goes unnoticed for up to %v", nc.Opts.PingInterval, nc.Opts.MaxPingsOut, limit)
	}
	if os.Getenv("DUPLEX_LONG") != "1" {
		return
	}
	fr := &faultReport{}
	bh := blackhole(func(*faultRig) *toxiclient.Proxy { return px })
	bh.cut(nil, fr)
	t0 := time.Now()
	for nc.IsConnected() {
		if time.Since(t0) > time.Minute {
			t.Fatal("the blackholed connection still looks connected after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("noticed the blackhole after %v", time.Since(t0).Round(time.Millisecond))
	bh.heal(nil, fr)
	for _, e := range fr.errs {
		t.Error(e)
	}
}
