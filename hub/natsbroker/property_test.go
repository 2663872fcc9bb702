package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// The hub's recovery property (hub/recovery_property_test.go) run against
// this broker, through the hub's exported API and real WebSockets, with two
// hubs on two brokers sharing the rooms: random publishes (by either hub and
// by clients), clients that connect to either hub and subscribe with their
// last position, clients dropped cleanly or abruptly, rooms trimmed by count
// and purged. After every step each connected client must hold, per room,
// the room's sequence after its position with no gap, duplicate or
// reordering, and every subscribe with a position must say "recovered"
// exactly when the package's recovery rule (doc.go) and the hub's MaxRecover
// allow it, and then hand over exactly the missed publications.
func TestRecoveryPropertyOverHubs(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runProperty(t, seed, 200) })
	}
}

const (
	propHistory    = 8
	propMaxRecover = 6
)

// propMsg is one message stored on a room's subject: a publication or a
// purge marker.
type propMsg struct {
	seq    uint64
	data   string
	marker bool
}

type propModel struct {
	rooms map[string][]propMsg // everything ever stored, per room
	// removed[seq] marks what the stream no longer holds (trimmed by
	// count, or purged).
	removed map[uint64]bool
	lastSeq uint64 // the stream's last sequence
}

func (m *propModel) stored(room string) []propMsg {
	var out []propMsg
	for _, x := range m.rooms[room] {
		if !m.removed[x.seq] {
			out = append(out, x)
		}
	}
	return out
}

// add stores a message, trimming the room to propHistory.
func (m *propModel) add(room string, x propMsg) {
	m.rooms[room] = append(m.rooms[room], x)
	m.lastSeq = x.seq
	if st := m.stored(room); len(st) > propHistory {
		m.removed[st[0].seq] = true
	}
}

func (m *propModel) purge(room string, marker uint64) {
	m.add(room, propMsg{seq: marker, marker: true})
	for _, x := range m.rooms[room] {
		if x.seq < marker {
			m.removed[x.seq] = true
		}
	}
}

// firstSeq is the stream's first sequence: the lowest still held.
func (m *propModel) firstSeq() uint64 {
	first := m.lastSeq + 1
	for _, xs := range m.rooms {
		for _, x := range xs {
			if !m.removed[x.seq] && x.seq < first {
				first = x.seq
			}
		}
	}
	return first
}

// recover says what a subscribe since X gets: ok and the publications
// missed, by the package's rule and MaxRecover.
func (m *propModel) recover(room string, x uint64) (bool, []propMsg) {
	st := m.stored(room)
	var missed []propMsg
	for _, e := range m.rooms[room] {
		if e.seq > x {
			if e.marker || m.removed[e.seq] {
				return false, nil // purged or trimmed after X
			}
			missed = append(missed, e)
		}
	}
	a := len(st) > 0 && st[0].seq <= x
	b := len(st) < propHistory && x+1 >= m.firstSeq()
	if !(a || b) || len(missed) > propMaxRecover {
		return false, nil
	}
	return true, missed
}

// next is the room's publication that follows x, if any.
func (m *propModel) next(room string, x uint64) (propMsg, bool) {
	for _, e := range m.rooms[room] {
		if e.seq > x {
			return e, true
		}
	}
	return propMsg{}, false
}

type propClient struct {
	wc      *wsClient
	cursor  int
	purges  int // purges when it connected: after one, a publish through it may meet its reset
	last    map[string]*hub.Position
	expect  map[uint64]propExpect
	dropped bool
}

type propExpect struct {
	room      string
	since     *hub.Position
	recovered bool
	missed    []propMsg
}

func runProperty(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	opts := Options{HistorySize: propHistory}
	n := newNode(t, "", opts)
	hubOpts := hub.Options{MaxRecover: propMaxRecover}
	hA, urlA := startHub(t, n.b, hubOpts)
	hB, urlB := startHub(t, n.broker(opts), hubOpts)
	hubs := []*hub.Hub{hA, hB}
	urls := []string{urlA, urlB}
	ctx := context.Background()

	rooms := []string{"a", "b", "c"}
	model := &propModel{rooms: map[string][]propMsg{}, removed: map[uint64]bool{}}
	epoch := history(t, n.b, "a", hub.HistoryQuery{}).Latest.Epoch
	clients := make([]*propClient, 6)
	for i := range clients {
		clients[i] = &propClient{last: map[string]*hub.Position{}}
	}
	published := 0
	var counts struct{ recovered, notRecovered, fresh, live, drops, purges, resets int }

	publish := func(room string, via *propClient) {
		published++
		data := fmt.Sprintf(`{"n":%d}`, published)
		var pos hub.Position
		if via != nil {
			m := via.wc.call(map[string]any{"op": "publish", "room": room, "data": json.RawMessage(data)})
			if m.Error != nil {
				t.Fatalf("publish: %v", m.Error)
			}
			var res struct{ Position hub.Position }
			json.Unmarshal(m.Result, &res)
			pos = res.Position
		} else {
			var err error
			if pos, err = hubs[rng.IntN(2)].Publish(ctx, room, json.RawMessage(data)); err != nil {
				t.Fatal(err)
			}
		}
		if pos.Epoch != epoch || pos.Offset != model.lastSeq+1 {
			t.Fatalf("publish to %s: position %+v, model expects offset %d in epoch %s", room, pos, model.lastSeq+1, epoch)
		}
		model.add(room, propMsg{seq: pos.Offset, data: data})
	}

	check := func(ci int, c *propClient) {
		c.wc.mu.Lock()
		msgs := append([]wsMsg(nil), c.wc.msgs[c.cursor:]...)
		c.wc.mu.Unlock()
		c.cursor += len(msgs)
		for _, m := range msgs {
			switch {
			case m.ID != 0:
				ex, ok := c.expect[m.ID]
				if !ok {
					continue // a publish reply
				}
				delete(c.expect, m.ID)
				if m.Error != nil {
					t.Fatalf("client %d subscribe %s: %v", ci, ex.room, m.Error)
				}
				var res wsSubResult
				json.Unmarshal(m.Result, &res)
				got := res.Recovered != nil && *res.Recovered
				if ex.since != nil && got != ex.recovered {
					t.Fatalf("client %d subscribe %s since %+v: recovered=%v, the rule says %v", ci, ex.room, *ex.since, got, ex.recovered)
				}
				var want []propMsg
				switch {
				case ex.since != nil && ex.recovered:
					want = ex.missed
					counts.recovered++
				case ex.since != nil:
					counts.notRecovered++
				default:
					counts.fresh++
				}
				// A hub whose room lags behind the stream (live delivery
				// is asynchronous) replies with what it has delivered up
				// to its position; the rest of what was missed follows
				// live, checked below as any live publication.
				upTo := 0
				for upTo < len(want) && want[upTo].seq <= res.Position.Offset {
					upTo++
				}
				if len(res.Publications) != upTo {
					t.Fatalf("client %d subscribe %s since %v: %d publications up to %+v, want %d of %d missed", ci, ex.room, ex.since, len(res.Publications), res.Position, upTo, len(want))
				}
				for i, p := range res.Publications {
					if p.Offset != want[i].seq || string(p.Data) != want[i].data {
						t.Fatalf("client %d subscribe %s: recovered %d = %d %s, want %+v", ci, ex.room, i, p.Offset, p.Data, want[i])
					}
				}
				if res.Position.Epoch != epoch {
					t.Fatalf("client %d subscribe %s: position %+v not in epoch %s", ci, ex.room, res.Position, epoch)
				}
				pos := res.Position
				c.last[ex.room] = &pos
			case m.Push == "pub":
				last := c.last[m.Room]
				if last == nil {
					t.Fatalf("client %d got a publication of %s before its subscribe reply", ci, m.Room)
				}
				want, ok := model.next(m.Room, last.Offset)
				if !ok || want.marker || want.seq != m.Offset || string(m.Data) != want.data || m.Epoch != last.Epoch {
					t.Fatalf("client %d room %s: publication %d %s after %d: want %+v (a gap, duplicate, reordering or a purge crossed)", ci, m.Room, m.Offset, m.Data, last.Offset, want)
				}
				last.Offset = m.Offset
				counts.live++
			}
		}
	}

	settle := func() {
		for ci, c := range clients {
			if c.wc == nil {
				continue
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				check(ci, c)
				c.wc.mu.Lock()
				ended := c.wc.err
				c.wc.mu.Unlock()
				if ended != nil {
					check(ci, c)
					var ce *websocket.CloseError
					if errors.As(ended, &ce) && ce.Code == hub.CloseInsufficientState {
						counts.resets++
					} else if !c.dropped {
						t.Fatalf("client %d's connection ended unasked: %v", ci, ended)
					}
					c.wc.c.CloseNow()
					<-c.wc.done
					c.wc = nil
					break
				}
				done := len(c.expect) == 0 && !c.dropped
				for _, room := range rooms {
					l := c.last[room]
					if l == nil {
						done = false
						continue
					}
					if nx, ok := model.next(room, l.Offset); ok && !nx.marker {
						done = false
					}
				}
				if done {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("client %d did not catch up: has %v", ci, c.last)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}

	// quiesce waits until the hubs hold exactly the subscriptions of the
	// connected clients: a client reset with 4010 has then been let go by
	// its hub too. See TestHubResetRoomKeepsStalePosition for why.
	quiesce := func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			settle()
			want := 0
			for _, c := range clients {
				if c.wc != nil {
					want += len(rooms)
				}
			}
			have := hA.Stats().Subscriptions + hB.Stats().Subscriptions
			if have == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("hubs hold %d subscriptions, clients %d", have, want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	connect := func(c *propClient) {
		hi := rng.IntN(2)
		c.wc = dialHub(t, urls[hi])
		c.cursor, c.dropped, c.expect, c.purges = 0, false, map[uint64]propExpect{}, counts.purges
		for _, room := range rooms {
			ex := propExpect{room: room}
			cmd := map[string]any{"op": "subscribe", "room": room}
			if l := c.last[room]; l != nil {
				since := *l
				ex.since = &since
				ex.recovered, ex.missed = model.recover(room, since.Offset)
				cmd["since"] = since
			}
			id := c.wc.send(cmd)
			c.expect[id] = ex
			delete(c.last, room)
		}
	}

	for step := 0; step < steps; step++ {
		c := clients[rng.IntN(len(clients))]
		room := rooms[rng.IntN(len(rooms))]
		switch op := rng.IntN(100); {
		case op < 45:
			var via *propClient
			if c.wc != nil && c.purges == counts.purges && rng.IntN(2) == 0 {
				via = c
			}
			publish(room, via)
		case op < 70:
			if c.wc == nil {
				connect(c)
			}
		case op < 97:
			if c.wc != nil {
				c.dropped = true
				counts.drops++
				if rng.IntN(2) == 0 {
					c.wc.c.Close(websocket.StatusNormalClosure, "")
				} else {
					c.wc.c.CloseNow()
				}
			}
		default:
			counts.purges++
			if err := n.b.Purge(ctx, room); err != nil {
				t.Fatal(err)
			}
			model.purge(room, model.lastSeq+1)
			publish(room, nil)
			// Every client is subscribed to the room on a hub that
			// delivered up to before the purge: the publication breaks
			// its chain, history refuses the gap, and the hub resets it
			// with 4010. Wait for all of them to end and be let go, so
			// that no client subscribes to a room in the middle of its
			// reset (see TestHubResetRoomKeepsStalePosition).
			for _, c := range clients {
				if c.wc != nil && !c.wc.waitFor(func([]wsMsg) bool { return false }) && c.wc.err == nil {
					t.Fatalf("a client subscribed to purged room %s was not reset", room)
				}
			}
		}
		quiesce()
	}
	t.Logf("seed %d: %d steps, %d publications; subscribes: %d recovered, %d told not recovered, %d fresh; %d live deliveries checked, %d drops, %d purges, %d clients reset; hubs %+v %+v",
		seed, steps, published, counts.recovered, counts.notRecovered, counts.fresh, counts.live, counts.drops, counts.purges, counts.resets, hA.Stats(), hB.Stats())
	if counts.recovered == 0 || counts.notRecovered == 0 {
		t.Errorf("the run never exercised both outcomes (recovered %d, not %d)", counts.recovered, counts.notRecovered)
	}
}
