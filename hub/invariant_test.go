package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// Delivery under churn, with real clients over real sockets: subscribers in
// several rooms are dropped at random (a clean close, or a TCP reset) while
// publishers number their messages, and each comes back with its last
// position per room. At the end every subscriber has every message of its
// rooms exactly once and in order; every recovery succeeded (the history
// is deep enough).
func TestDeliveryUnderChurn(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		const (
			rooms   = 10
			perRoom = 150 // messages each room's publisher sends
			pace    = 10 * time.Millisecond
		)
		// Under the race detector the fan-out to 200 subscribers, not the
		// pace, sets the test's length; it runs once per mode, so half
		// as many keep the package's time what it was with one mode.
		subscribers := 200
		if raceEnabled {
			subscribers = 100
		}
		h, url := startHub(t, mode, Options{PublishRate: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Every subscriber starts from the rooms' beginning: offset 0 of their
		// epoch, which a history query of the empty room tells.
		start := map[string]Position{}
		for r := range rooms {
			name := fmt.Sprintf("room%d", r)
			hist, err := h.History(ctx, name, HistoryQuery{})
			if err != nil {
				t.Fatal(err)
			}
			start[name] = hist.Latest
		}

		var failures sync.Map // first error per subscriber
		fail := func(who string, err error) { failures.LoadOrStore(who, err) }
		var drops, resets, recoveries, reconnects atomic.Int64
		stop := make(chan struct{}) // closed when every publisher is done

		var wg sync.WaitGroup
		for r := range rooms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := publishNumbered(ctx, url, fmt.Sprintf("room%d", r), perRoom, pace); err != nil {
					fail(fmt.Sprintf("publisher %d", r), err)
				}
			}()
		}
		var subs sync.WaitGroup
		for i := range subscribers {
			subs.Add(1)
			go func() {
				defer subs.Done()
				rng := rand.New(rand.NewPCG(uint64(i), 42))
				a := rng.IntN(rooms)
				b := (a + 1 + rng.IntN(rooms-1)) % rooms
				ra, rb := fmt.Sprintf("room%d", a), fmt.Sprintf("room%d", b)
				pa, pb := start[ra], start[rb]
				s := &churnSubscriber{rooms: []string{ra, rb}, want: perRoom,
					last: map[string]*Position{ra: &pa, rb: &pb}, got: map[string]int{}}
				if err := s.run(ctx, url, rng, stop, &drops, &resets, &recoveries, &reconnects); err != nil {
					fail(fmt.Sprintf("subscriber %d", i), err)
				}
			}()
		}
		began := time.Now()
		wg.Wait()
		published := time.Since(began)
		close(stop)
		subs.Wait()
		t.Logf("publishers took %v, subscribers %v more", published.Round(time.Millisecond), (time.Since(began) - published).Round(time.Millisecond))
		n := 0
		failures.Range(func(k, v any) bool {
			if n < 10 {
				t.Errorf("%s: %v", k, v)
			}
			n++
			return true
		})
		t.Logf("%d subscribers in %d rooms, %d messages per room: %d drops (%d of them TCP resets), %d reconnects, %d recoveries, %d failures",
			subscribers, rooms, perRoom, drops.Load(), resets.Load(), reconnects.Load(), recoveries.Load(), n)
		if drops.Load() == 0 || recoveries.Load() == 0 {
			t.Errorf("the run dropped %d and recovered %d: no churn was tested", drops.Load(), recoveries.Load())
		}
	})
}

// publishNumbered publishes {"n": 1..count} to room over the protocol,
// each with an idempotency key.
func publishNumbered(ctx context.Context, url, room string, count int, pace time.Duration) error {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		return err
	}
	defer c.CloseNow()
	call := func(id int, cmd string) error {
		if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
			return err
		}
		msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var m inMsg
		if err := json.Unmarshal(msg.Data, &m); err != nil || m.ID != uint64(id) || m.Error != nil {
			return fmt.Errorf("reply to %s: %s", cmd, msg.Data)
		}
		return nil
	}
	if err := call(1, `{"id":1,"op":"connect"}`); err != nil {
		return err
	}
	for n := 1; n <= count; n++ {
		cmd := fmt.Sprintf(`{"id":%d,"op":"publish","room":%q,"data":{"n":%d},"key":"%s-%d"}`, n+1, room, n, room, n)
		if err := call(n+1, cmd); err != nil {
			return err
		}
		time.Sleep(pace)
	}
	return c.Close(websocket.StatusNormalClosure, "")
}

type churnSubscriber struct {
	rooms []string
	want  int
	last  map[string]*Position
	got   map[string]int // messages received per room: the last n
	drops int
}

// maxDropsPerSubscriber bounds the churn, so that the test costs the same
// on a slow machine: handshakes under the race detector are what it spends.
const maxDropsPerSubscriber = 4

func (s *churnSubscriber) complete() bool {
	for _, r := range s.rooms {
		if s.got[r] < s.want {
			return false
		}
	}
	return true
}

// run connects, subscribes with its positions, and reads until it is
// dropped (at random) or has every message; then again.
func (s *churnSubscriber) run(ctx context.Context, url string, rng *rand.Rand, stop <-chan struct{}, drops, resets, recoveries, reconnects *atomic.Int64) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			reconnects.Add(1)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("out of time with %v", s.got)
		}
		var tcp *net.TCPConn
		var mu sync.Mutex
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				tcp = c.(*net.TCPConn)
				mu.Unlock()
			}
			return c, err
		}}
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			return err
		}
		c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"op":"connect"}`))
		for i, room := range s.rooms {
			cmd := map[string]any{"id": i + 2, "op": "subscribe", "room": room}
			if l := s.last[room]; l != nil {
				cmd["since"] = *l
			}
			b, _ := json.Marshal(cmd)
			c.Write(ctx, websocket.MessageText, b)
		}
		// Drop after a random while, while the publishers still publish;
		// after that, let it complete.
		dropAfter := time.Duration(100+rng.IntN(500)) * time.Millisecond
		select {
		case <-stop:
			dropAfter = time.Hour
		default:
			if s.drops >= maxDropsPerSubscriber {
				dropAfter = time.Hour
			}
		}
		abrupt := rng.IntN(2) == 0
		dropped := make(chan struct{})
		timer := time.AfterFunc(dropAfter, func() {
			close(dropped)
			if abrupt {
				mu.Lock()
				tcp.SetLinger(0) // close sends RST
				mu.Unlock()
				c.CloseNow()
			} else {
				c.Close(websocket.StatusNormalClosure, "")
			}
		})
		err = s.read(ctx, c, recoveries)
		timer.Stop()
		c.CloseNow()
		tr.CloseIdleConnections()
		select {
		case <-dropped:
			s.drops++
			drops.Add(1)
			if abrupt {
				resets.Add(1)
			}
		default:
			if err != nil && !errors.Is(err, errDone) {
				return err
			}
		}
		if s.complete() {
			return nil
		}
		select {
		case <-stop:
			// Publishers are done: one more connection must complete it.
			if attempt > 1000 {
				return fmt.Errorf("never completed: %v", s.got)
			}
		default:
		}
	}
}

var errDone = errors.New("complete")

func (s *churnSubscriber) read(ctx context.Context, c *websocket.Conn, recoveries *atomic.Int64) error {
	var buf []byte
	for {
		msg, err := c.ReadInto(ctx, buf)
		if err != nil {
			return err
		}
		buf = msg.Data[:0]
		var m struct {
			inMsg
			Result *subResult `json:"result"`
		}
		if err := json.Unmarshal(msg.Data, &m); err != nil {
			return err
		}
		switch {
		case m.ID >= 2 && m.Result != nil:
			res := m.Result
			if m.Error != nil {
				return fmt.Errorf("subscribe: %v", m.Error)
			}
			if s.last[res.Room] != nil {
				if res.Recovered == nil || !*res.Recovered {
					return fmt.Errorf("room %s: not recovered from %+v", res.Room, *s.last[res.Room])
				}
				recoveries.Add(1)
			}
			for _, p := range res.Publications {
				if err := s.accept(res.Room, p.Offset, p.Epoch, p.Data); err != nil {
					return err
				}
			}
			pos := res.Position
			s.last[res.Room] = &pos
		case m.Push == "pub":
			if err := s.accept(m.Room, m.Offset, m.Epoch, m.Data); err != nil {
				return err
			}
			s.last[m.Room].Offset = m.Offset
		case m.Push == "disconnect" || m.Error != nil:
			return fmt.Errorf("unexpected: %s", msg.Data)
		}
		if s.complete() {
			return errDone
		}
	}
}

// accept checks that a publication is the next one of its room.
func (s *churnSubscriber) accept(room string, offset uint64, epoch string, data json.RawMessage) error {
	var d struct{ N int }
	json.Unmarshal(data, &d)
	if d.N != s.got[room]+1 {
		return fmt.Errorf("room %s: got message %d after %d (offset %d)", room, d.N, s.got[room], offset)
	}
	if l := s.last[room]; l != nil && (offset != l.Offset+1 || epoch != l.Epoch) {
		return fmt.Errorf("room %s: offset %d/%s after %d/%s", room, offset, epoch, l.Offset, l.Epoch)
	}
	s.got[room] = d.N
	if l := s.last[room]; l != nil {
		l.Offset = offset
	}
	return nil
}
