package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The recovery rule, as a property over random runs against the memory
// broker: publishes (by the server and by clients), clients that connect and
// subscribe with their last position, clients dropped cleanly or abruptly,
// time that passes (history ages out), rooms whose history is reset. After
// every step each connected client must have received, for each room, the
// room's sequence after its position with no gap, duplicate or reordering,
// and each subscribe with a position must say "recovered" exactly when the
// model says the history still vouches for it (same epoch, the next
// publication still kept, at most MaxRecover missed) and then hand over
// exactly the missed publications; otherwise none.
func TestRecoveryProperty(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6}
	if testing.Short() {
		seeds = seeds[:2]
	}
	inEachMode(t, func(t *testing.T, mode serveMode) {
		for _, seed := range seeds {
			t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runRecoveryProperty(t, mode, seed, 250) })
		}
	})
}

const (
	propHistorySize = 8
	propMaxRecover  = 6
	propTTL         = time.Minute
)

type propEntry struct {
	pos  Position
	data string
	at   time.Time
}

// propRoom is the model of one room: the publications of its current epoch.
type propRoom struct {
	epoch   string
	entries []propEntry // offsets 1..n of the current epoch
}

func (r *propRoom) latest() Position {
	if len(r.entries) == 0 {
		return Position{Epoch: r.epoch}
	}
	return r.entries[len(r.entries)-1].pos
}

// recoverable says whether the history still vouches for since.
func (r *propRoom) recoverable(since Position, now time.Time) bool {
	l := r.latest()
	if since.Epoch != r.epoch || since.Offset > l.Offset {
		return false
	}
	if since.Offset == l.Offset {
		return true
	}
	if l.Offset-since.Offset > propMaxRecover {
		return false
	}
	next := since.Offset + 1
	if next+propHistorySize <= l.Offset { // dropped by count
		return false
	}
	return now.Sub(r.entries[next-1].at) <= propTTL // not aged out
}

type propClient struct {
	tc      *testClient
	cursor  int                  // messages of tc already checked
	last    map[string]*Position // per room: the last position the client has
	expect  map[uint64]propExpect
	dropped bool // we closed it; its end is expected
}

type propExpect struct {
	room      string
	since     *Position
	recovered bool
	missed    []propEntry
	latest    Position
}

func runRecoveryProperty(t *testing.T, mode serveMode, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	var clock atomic.Int64
	clock.Store(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	b := NewMemoryBroker(MemoryOptions{HistorySize: propHistorySize, HistoryTTL: propTTL})
	b.now = now
	h, url := startHub(t, mode, Options{Broker: b, MaxRecover: propMaxRecover, PublishRate: -1})
	defer b.Close()

	rooms := []string{"a", "b", "c"}
	model := map[string]*propRoom{}
	for _, name := range rooms {
		hist, err := b.History(context.Background(), name, HistoryQuery{})
		if err != nil {
			t.Fatal(err)
		}
		model[name] = &propRoom{epoch: hist.Latest.Epoch}
	}
	clients := make([]*propClient, 6)
	for i := range clients {
		clients[i] = &propClient{last: map[string]*Position{}}
	}
	published := 0
	var counts struct{ recovered, notRecovered, fresh, dropped, resets, live int }

	publish := func(room string, via *propClient) {
		published++
		data := fmt.Sprintf(`{"n":%d}`, published)
		var pos Position
		if via != nil {
			m := via.tc.call(map[string]any{"op": "publish", "room": room, "data": json.RawMessage(data)})
			if m.Error != nil {
				t.Fatalf("publish: %v", m.Error)
			}
			var res publishResult
			json.Unmarshal(m.Result, &res)
			pos = res.Position
		} else {
			var err error
			if pos, err = h.Publish(context.Background(), room, json.RawMessage(data)); err != nil {
				t.Fatal(err)
			}
		}
		m := model[room]
		if pos.Epoch != m.epoch || pos.Offset != m.latest().Offset+1 {
			t.Fatalf("publish to %s got position %+v, model expects offset %d in epoch %s", room, pos, m.latest().Offset+1, m.epoch)
		}
		m.entries = append(m.entries, propEntry{pos: pos, data: data, at: now()})
	}

	// check walks the messages a client received since the last check.
	check := func(ci int, c *propClient) {
		c.tc.mu.Lock()
		msgs := append([]inMsg(nil), c.tc.msgs[c.cursor:]...)
		c.tc.mu.Unlock()
		c.cursor += len(msgs)
		for _, m := range msgs {
			switch {
			case m.ID != 0:
				ex, ok := c.expect[m.ID]
				if !ok {
					continue // a publish reply
				}
				delete(c.expect, m.ID)
				res := subscribeResultOf(t, m)
				got := res.Recovered != nil && *res.Recovered
				if ex.since != nil && got != ex.recovered {
					t.Fatalf("client %d subscribe %s since %+v: recovered=%v, model says %v (latest %+v)", ci, ex.room, *ex.since, got, ex.recovered, ex.latest)
				}
				// Live delivery starts at the reply's position: the room's
				// latest, or an earlier one while the hub still has
				// publications in its room's inbox (they follow live).
				if res.Position.Epoch != ex.latest.Epoch || res.Position.Offset > ex.latest.Offset {
					t.Fatalf("client %d subscribe %s: position %+v, room is at %+v", ci, ex.room, res.Position, ex.latest)
				}
				var want []propEntry
				if ex.since != nil && ex.recovered {
					if res.Position.Offset < ex.since.Offset {
						t.Fatalf("client %d subscribe %s: position %+v before its since %+v", ci, ex.room, res.Position, *ex.since)
					}
					want = ex.missed[:res.Position.Offset-ex.since.Offset]
					counts.recovered++
				} else if ex.since != nil {
					counts.notRecovered++
				} else {
					counts.fresh++
				}
				if len(res.Publications) != len(want) {
					t.Fatalf("client %d subscribe %s since %v: %d publications, want %d", ci, ex.room, ex.since, len(res.Publications), len(want))
				}
				for i, p := range res.Publications {
					if p.Offset != want[i].pos.Offset || p.Epoch != want[i].pos.Epoch || string(p.Data) != want[i].data {
						t.Fatalf("client %d subscribe %s: recovered publication %d = %d/%s %s, want %+v", ci, ex.room, i, p.Offset, p.Epoch, p.Data, want[i])
					}
				}
				pos := res.Position
				c.last[ex.room] = &pos
			case m.Push == "pub":
				last := c.last[m.Room]
				if last == nil {
					t.Fatalf("client %d got a publication of %s before its subscribe reply", ci, m.Room)
				}
				mr := model[m.Room]
				if m.Epoch != last.Epoch || m.Offset != last.Offset+1 {
					t.Fatalf("client %d room %s: publication %d/%s after %d/%s: a gap, duplicate or reordering", ci, m.Room, m.Offset, m.Epoch, last.Offset, last.Epoch)
				}
				if m.Epoch != mr.epoch || int(m.Offset) > len(mr.entries) || string(m.Data) != mr.entries[m.Offset-1].data {
					t.Fatalf("client %d room %s: publication %d %s is not the room's", ci, m.Room, m.Offset, m.Data)
				}
				last.Offset = m.Offset
				counts.live++
			}
		}
	}

	// settle waits until every connected client has the rooms' latest, or
	// its connection ended.
	settle := func() {
		for ci, c := range clients {
			if c.tc == nil {
				continue
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				check(ci, c)
				c.tc.mu.Lock()
				ended := c.tc.err
				c.tc.mu.Unlock()
				if ended != nil {
					check(ci, c)
					var ce *websocket.CloseError
					if !c.dropped && !(errors.As(ended, &ce) && ce.Code == CloseInsufficientState) {
						t.Fatalf("client %d's connection ended unasked: %v", ci, ended)
					}
					c.tc.c.CloseNow()
					<-c.tc.done
					c.tc = nil
					break
				}
				done := len(c.expect) == 0 && !c.dropped // a dropped one: wait for its end
				for _, room := range rooms {
					if l := c.last[room]; l == nil || *l != model[room].latest() {
						done = false
					}
				}
				if done {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("client %d did not catch up: has %v, rooms are at %v %v %v", ci, c.last, model["a"].latest(), model["b"].latest(), model["c"].latest())
				}
				time.Sleep(time.Millisecond)
			}
		}
	}

	connect := func(c *propClient) {
		c.tc = dialHub(t, url, `{}`)
		c.cursor, c.dropped, c.expect = 0, false, map[uint64]propExpect{}
		for _, room := range rooms {
			mr := model[room]
			ex := propExpect{room: room, latest: mr.latest()}
			cmd := map[string]any{"op": "subscribe", "room": room}
			if l := c.last[room]; l != nil {
				since := *l
				ex.since = &since
				ex.recovered = mr.recoverable(since, now())
				if ex.recovered {
					ex.missed = mr.entries[since.Offset:]
				}
				cmd["since"] = since
			}
			c.tc.mu.Lock()
			c.tc.nextID++
			id := c.tc.nextID
			c.tc.mu.Unlock()
			c.expect[id] = ex
			cmd["id"] = id
			b, _ := json.Marshal(cmd)
			if err := c.tc.c.Write(context.Background(), websocket.MessageText, b); err != nil {
				t.Fatal(err)
			}
			delete(c.last, room) // set again by the reply
		}
	}

	for step := 0; step < steps; step++ {
		c := clients[rng.IntN(len(clients))]
		room := rooms[rng.IntN(len(rooms))]
		switch op := rng.IntN(100); {
		case op < 40:
			var via *propClient
			if c.tc != nil && rng.IntN(2) == 0 {
				via = c
			}
			publish(room, via)
		case op < 65:
			if c.tc == nil {
				connect(c)
			}
		case op < 85:
			if c.tc != nil {
				c.dropped = true
				counts.dropped++
				if rng.IntN(2) == 0 {
					c.tc.c.Close(websocket.StatusNormalClosure, "")
				} else {
					c.tc.c.CloseNow() // abrupt: no closing handshake
				}
			}
		case op < 97:
			clock.Add(int64(time.Duration(rng.IntN(40)) * time.Second))
		default:
			// The broker loses the room's history; the next publication
			// comes in a new epoch, and the hub closes the room's
			// subscribers with 4010.
			counts.resets++
			b.Reset(room)
			hist, _ := b.History(context.Background(), room, HistoryQuery{})
			model[room] = &propRoom{epoch: hist.Latest.Epoch}
			publish(room, nil)
		}
		settle()
	}
	t.Logf("seed %d: %d steps, %d publications; subscribes: %d recovered, %d told not recovered, %d fresh; %d live deliveries checked, %d drops, %d resets",
		seed, steps, published, counts.recovered, counts.notRecovered, counts.fresh, counts.live, counts.dropped, counts.resets)
	if counts.recovered == 0 || counts.notRecovered == 0 {
		t.Errorf("the run never exercised both outcomes (recovered %d, not %d): adjust the mix", counts.recovered, counts.notRecovered)
	}
}
