package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// delivery is the traffic of the multi-process tests and its invariant:
// keyed publishers, one per room, publish numbered messages; subscribers
// reconnect wherever their addr says after any disconnect and recover from
// their last positions; check proves that every subscriber got every
// publication of its rooms exactly once, in order, at the offset its
// publisher was acknowledged, and that every recovery succeeded.
type delivery struct {
	t     *testing.T
	rooms []string
	pubs  []*keyedPub // by room, as rooms
	subs  []*checkedSub

	subCancel context.CancelFunc
	finished  sync.WaitGroup
	pubsDone  chan struct{}
	pubEnd    time.Time
}

// addSub adds a subscriber to rooms, which connects to addr() each time.
func (d *delivery) addSub(home string, addr func() string, rooms []string) {
	d.subs = append(d.subs, &checkedSub{id: len(d.subs), home: home, addr: addr, rooms: rooms,
		last: map[string]hub.Position{}, got: map[string][]gotPub{}, end: map[string]bool{}})
}

// roomsOf gives subscriber i its rooms: each room alone in turn, then all.
func (d *delivery) roomsOf(i int) []string {
	if k := i % (len(d.rooms) + 1); k < len(d.rooms) {
		return d.rooms[k : k+1]
	}
	return d.rooms
}

// subscribe starts every subscriber and returns once each has subscribed
// (or fails the test).
func (d *delivery) subscribe(ctx context.Context) {
	ctx, d.subCancel = context.WithCancel(ctx)
	d.t.Cleanup(d.subCancel)
	var subscribed sync.WaitGroup
	for _, s := range d.subs {
		subscribed.Add(1)
		d.finished.Add(1)
		go func() {
			defer d.finished.Done()
			s.run(ctx, subscribed.Done)
		}()
	}
	if !d.wait(&subscribed, testTimeout) {
		for _, s := range d.subs {
			d.t.Logf("subscriber %d: %s", s.id, strings.Join(s.errs, "; "))
		}
		d.t.Fatal("subscribers did not subscribe")
	}
}

// wait waits for wg at most timeout; past it, it ends the subscribers
// (and so wg's goroutines) and returns false.
func (d *delivery) wait(wg *sync.WaitGroup, timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		d.subCancel()
		<-done
		return false
	}
}

// publish starts one publisher per room, on pubAddr(i) for the room i,
// each publishing n messages one every interval (n 0: until stop is
// closed); progress is called after each acknowledgement. pubsDone is
// closed once every publisher has ended.
func (d *delivery) publish(ctx context.Context, pubAddr func(i int) func() string, n int, interval time.Duration, stop <-chan struct{}, progress func(n int)) {
	var wg sync.WaitGroup
	d.pubsDone = make(chan struct{})
	for i, room := range d.rooms {
		p := &keyedPub{room: room, addr: pubAddr(i), n: n, interval: interval, stop: stop}
		d.pubs = append(d.pubs, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx, progress)
		}()
	}
	go func() {
		wg.Wait()
		d.pubEnd = time.Now()
		close(d.pubsDone)
	}()
}

// check waits for the publishers, then for every subscriber to have the
// last publication of each of its rooms, then checks the invariant and
// logs the figures. It reports whether the invariant held.
func (d *delivery) check() bool {
	t := d.t
	t.Helper()
	<-d.pubsDone
	for _, p := range d.pubs {
		if p.err != nil {
			t.Errorf("publisher of %s: %v", p.room, p.err)
			return false
		}
	}
	if !d.wait(&d.finished, 30*time.Second) {
		t.Errorf("subscribers not done 30s after the last publication")
	}
	t.Logf("all subscribers done %v after the last publication", time.Since(d.pubEnd).Round(time.Millisecond))

	ok := true
	for _, s := range d.subs {
		for _, e := range s.errs {
			t.Errorf("subscriber %d (home %s): %s", s.id, s.home, e)
			ok = false
		}
		for _, room := range s.rooms {
			acked := d.pubs[slices.Index(d.rooms, room)].acked
			want := len(acked) - 1
			got := s.got[room]
			if len(got) != want {
				t.Errorf("subscriber %d (home %s), room %s: %d publications, want %d", s.id, s.home, room, len(got), want)
				ok = false
			}
			for i, r := range got {
				if r.n != i+1 || r.n >= len(acked) || r.offset != acked[r.n] {
					t.Errorf("subscriber %d (home %s), room %s: publication #%d is n=%d offset %d, want n=%d offset %d (acknowledged)",
						s.id, s.home, room, i+1, r.n, r.offset, i+1, acked[min(i+1, want)])
					ok = false
					break
				}
			}
		}
	}

	retries := map[string]int{}
	var maxLat, pubGap time.Duration
	var maxLatN, published int
	for _, p := range d.pubs {
		for k, v := range p.retries {
			retries[k] += v
		}
		if p.maxLatency > maxLat {
			maxLat, maxLatN = p.maxLatency, p.maxLatencyN
		}
		pubGap = max(pubGap, p.maxGap)
		published += len(p.acked) - 1
	}
	t.Logf("published %d in %d rooms in %v; slowest publish %v (n=%d); longest gap between acknowledgements %v; retried publishes: %v",
		published, len(d.rooms), d.pubEnd.Sub(d.pubs[0].started).Round(time.Millisecond), maxLat.Round(time.Millisecond), maxLatN,
		pubGap.Round(time.Millisecond), retries)
	var recov []time.Duration
	var reconnects, recoveries, recoveredPubs int
	var subGap time.Duration
	subGapID := -1
	for _, s := range d.subs {
		reconnects += s.reconnects
		recoveries += s.recoveries
		recoveredPubs += s.recoveredPubs
		recov = append(recov, s.recoverTook...)
		if s.maxGap > subGap {
			subGap, subGapID = s.maxGap, s.id
		}
		if len(s.disconnects) > 0 || len(s.sessionErrs) > 0 {
			t.Logf("subscriber %d (home %s): disconnect pushes %q; failed sessions %d, last: %s",
				s.id, s.home, s.disconnects, len(s.sessionErrs), s.sessionErrs[max(len(s.sessionErrs)-1, 0):])
		}
	}
	slices.Sort(recov)
	if len(recov) > 0 {
		t.Logf("%d reconnects, %d rooms recovered with %d publications in all; time from disconnect to all rooms recovered: min %v, median %v, max %v",
			reconnects, recoveries, recoveredPubs, recov[0].Round(time.Millisecond), recov[len(recov)/2].Round(time.Millisecond), recov[len(recov)-1].Round(time.Millisecond))
	}
	t.Logf("longest gap between two publications delivered to one subscriber: %v (subscriber %d)", subGap.Round(time.Millisecond), subGapID)
	if ok {
		n := 0
		for _, s := range d.subs {
			n += len(s.rooms)
		}
		t.Logf("invariant holds: %d subscriptions on %d subscribers, each got its room's publications exactly once, in order, at the acknowledged offsets, every recovery recovered",
			n, len(d.subs))
	}
	return ok
}

// gotPub is one publication as a subscriber got it.
type gotPub struct {
	n      int
	offset uint64
}

// checkedSub is a subscriber: it subscribes to its rooms on addr(), reads
// until it has the last publication of each (the one its publisher marked
// last), and after any disconnect reconnects (to addr() again) and
// recovers every room from its last position. errs collects what broke the
// protocol's promises.
type checkedSub struct {
	id    int
	home  string
	addr  func() string
	rooms []string

	last          map[string]hub.Position
	got           map[string][]gotPub
	end           map[string]bool // the room's last publication came
	errs          []string
	reconnects    int
	recoveries    int
	recoveredPubs int             // publications received in subscribe replies after a since
	disconnects   []string        // disconnect pushes received
	sessionErrs   []string        // failed attempts to dial, connect or subscribe
	recoverTook   []time.Duration // from a disconnect to every room recovered
	lastAt        time.Time       // when the last publication came
	maxGap        time.Duration   // the longest wait between two publications
}

func (s *checkedSub) done() bool {
	for _, r := range s.rooms {
		if !s.end[r] {
			return false
		}
	}
	return true
}

func (s *checkedSub) fail(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// pub takes one publication of room, live or recovered.
func (s *checkedSub) pub(room string, offset uint64, epoch string, data json.RawMessage, how string) {
	now := time.Now()
	if !s.lastAt.IsZero() {
		s.maxGap = max(s.maxGap, now.Sub(s.lastAt))
	}
	s.lastAt = now
	last := s.last[room]
	if epoch != last.Epoch {
		s.fail("%s publication in room %s at offset %d in epoch %s, after epoch %s", how, room, offset, epoch, last.Epoch)
	}
	if offset <= last.Offset {
		s.fail("%s publication in room %s at offset %d, not after the last position %d: a duplicate", how, room, offset, last.Offset)
	}
	var d struct {
		N    int
		Last bool
	}
	if err := json.Unmarshal(data, &d); err != nil {
		s.fail("%s publication in room %s at offset %d: data %s: %v", how, room, offset, data, err)
	}
	s.got[room] = append(s.got[room], gotPub{n: d.N, offset: offset})
	s.last[room] = hub.Position{Offset: offset, Epoch: epoch}
	if d.Last {
		s.end[room] = true
	}
}

// push handles a push message.
func (s *checkedSub) push(data []byte) {
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
func (s *checkedSub) run(ctx context.Context, subscribed func()) {
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
func (s *checkedSub) session(ctx context.Context) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	addr := s.addr()
	c, _, err := websocket.Dial(dctx, "ws://"+addr+"/chat/hub", &websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}})
	if err != nil {
		return nil, err
	}
	id := 1
	call := func(cmd map[string]any) (json.RawMessage, error) {
		cmd["id"] = id
		id++
		return callHub(dctx, c, cmd, s.push)
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
				s.fail("on %s, room %s since %+v: recovered %v (%d publications, position %+v)", addr, room, last, r.Recovered != nil && *r.Recovered, len(r.Publications), r.Position)
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

// keyedPub publishes {"n": 1, 2, ...} into its room on addr(), one every
// interval, each with the key room-n, until n (n > 0) or until stop is
// closed; the last publication also says "last": true. An error reply
// (503 during an election, 429) or a lost connection retries the same key,
// on addr() again, until it is accepted.
type keyedPub struct {
	room     string
	addr     func() string
	n        int
	interval time.Duration
	stop     <-chan struct{}

	started     time.Time
	acked       []uint64 // offset of n, by n (acked[0] unused)
	retries     map[string]int
	maxLatency  time.Duration // of a publish, from its first try to its acknowledgement
	maxLatencyN int
	maxGap      time.Duration // between two acknowledgements
	err         error
}

func (p *keyedPub) run(ctx context.Context, progress func(n int)) {
	p.retries = map[string]int{}
	p.acked = []uint64{0}
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
	stopped := false
	for n := 1; ; n++ {
		if !stopped && p.stop != nil {
			select {
			case <-p.stop:
				stopped = true
			default:
			}
		}
		last := n == p.n || stopped
		data := map[string]any{"n": n}
		if last {
			data["last"] = true
		}
		first := time.Now()
		for {
			if ctx.Err() != nil {
				p.err = fmt.Errorf("publication %d: %w", n, ctx.Err())
				return
			}
			if c == nil {
				var err error
				if c, _, err = websocket.Dial(ctx, "ws://"+p.addr()+"/chat/hub", &websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}}); err != nil {
					p.retries["dial"]++
					time.Sleep(100 * time.Millisecond)
					continue
				}
				id++
				if _, err := callHub(ctx, c, map[string]any{"id": id, "op": "connect", "data": map[string]string{"name": "pub-" + p.room}}, nil); err != nil {
					p.retries["connect"]++ // a node shutting down may close at once
					c.CloseNow()
					c = nil
					continue
				}
			}
			id++
			res, err := callHub(ctx, c, map[string]any{"id": id, "op": "publish", "room": p.room,
				"key": fmt.Sprintf("%s-%d", p.room, n), "data": data}, nil)
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
			p.acked = append(p.acked, r.Position.Offset)
			break
		}
		now := time.Now()
		if d := now.Sub(first); d > p.maxLatency {
			p.maxLatency, p.maxLatencyN = d, n
		}
		p.maxGap = max(p.maxGap, now.Sub(lastAck))
		lastAck = now
		progress(n)
		if last {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}
