package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

func TestPublishReachesEverySubscriberInOrder(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		h, url := startHub(t, mode, Options{})
		a := dialHub(t, url, `{}`)
		b := dialHub(t, url, `{}`)
		for _, c := range []*testClient{a, b} {
			r := subscribeResultOf(t, c.call(map[string]any{"op": "subscribe", "room": "lobby"}))
			if r.Position.Offset != 0 || r.Position.Epoch == "" {
				t.Fatalf("empty room's position = %+v", r.Position)
			}
		}
		for i := 1; i <= 5; i++ {
			m := a.call(map[string]any{"op": "publish", "room": "lobby", "data": map[string]int{"n": i}})
			if m.Error != nil {
				t.Fatal(m.Error)
			}
		}
		if _, err := h.Publish(context.Background(), "lobby", json.RawMessage(`{"n":6}`)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*testClient{a, b} {
			if !c.waitFor(5*time.Second, func(msgs []inMsg) bool { return len(pubsIn(msgs, "lobby")) == 6 }) {
				t.Fatalf("got %d publications, want 6", len(c.pubs("lobby")))
			}
			for i, p := range c.pubs("lobby") {
				if p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
					t.Fatalf("publication %d = offset %d data %s", i, p.Offset, p.Data)
				}
				if i < 5 && (p.From == nil || p.From.Client != a.id) {
					t.Fatalf("publication %d from %+v, want client %s", i, p.From, a.id)
				}
				if i == 5 && p.From != nil {
					t.Fatalf("server publication has from %+v", p.From)
				}
			}
		}
	})
}

func TestIdempotentPublish(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		_, url := startHub(t, mode, Options{})
		c := dialHub(t, url, `{}`)
		first := c.call(map[string]any{"op": "publish", "room": "r", "data": 1, "key": "k1"})
		again := c.call(map[string]any{"op": "publish", "room": "r", "data": 1, "key": "k1"})
		other := c.call(map[string]any{"op": "publish", "room": "r", "data": 2, "key": "k2"})
		var p1, p2, p3 publishResult
		json.Unmarshal(first.Result, &p1)
		json.Unmarshal(again.Result, &p2)
		json.Unmarshal(other.Result, &p3)
		if p1.Position != p2.Position || p3.Position.Offset != p1.Position.Offset+1 {
			t.Fatalf("positions: first %+v, retried %+v, other key %+v", p1.Position, p2.Position, p3.Position)
		}
		h := c.call(map[string]any{"op": "history", "room": "r"})
		var hr struct{ Publications []wirePub }
		json.Unmarshal(h.Result, &hr)
		if len(hr.Publications) != 2 {
			t.Fatalf("history holds %d publications, want 2 (the retry appended nothing)", len(hr.Publications))
		}
	})
}

func TestHistoryQuery(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		h, url := startHub(t, mode, Options{})
		var pos []Position
		for i := 1; i <= 10; i++ {
			p, err := h.Publish(context.Background(), "r", json.RawMessage(fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
			pos = append(pos, p)
		}
		c := dialHub(t, url, `{}`)
		offsets := func(m inMsg) []uint64 {
			t.Helper()
			if m.Error != nil {
				t.Fatalf("history: %v", m.Error)
			}
			var hr struct {
				Position     Position
				Publications []wirePub
			}
			json.Unmarshal(m.Result, &hr)
			if hr.Position != pos[9] {
				t.Fatalf("history position %+v, want %+v", hr.Position, pos[9])
			}
			var out []uint64
			for _, p := range hr.Publications {
				out = append(out, p.Offset)
			}
			return out
		}
		for _, tc := range []struct {
			cmd  map[string]any
			want string
		}{
			{map[string]any{"op": "history", "room": "r", "limit": 3}, "[1 2 3]"},
			{map[string]any{"op": "history", "room": "r", "limit": 3, "reverse": true}, "[10 9 8]"},
			{map[string]any{"op": "history", "room": "r", "since": pos[6], "limit": 10}, "[8 9 10]"},
			{map[string]any{"op": "history", "room": "r", "since": pos[2], "limit": 2, "reverse": true}, "[10 9]"},
			{map[string]any{"op": "history", "room": "r", "limit": 0}, "[]"},
			{map[string]any{"op": "history", "room": "r"}, "[1 2 3 4 5 6 7 8 9 10]"},
		} {
			if got := fmt.Sprint(offsets(c.call(tc.cmd))); got != tc.want {
				t.Errorf("%v: offsets %s, want %s", tc.cmd, got, tc.want)
			}
		}
		stale := Position{Offset: 3, Epoch: "not-this-one"}
		if m := c.call(map[string]any{"op": "history", "room": "r", "since": stale}); m.Error == nil || m.Error.Code != CodeGone {
			t.Errorf("history since another epoch: %+v, want error 410", m.Error)
		}
	})
}

func TestPresence(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		_, url := startHub(t, mode, Options{Authenticate: func(_ context.Context, req ConnectRequest) (Identity, error) {
			var d struct{ Name string }
			json.Unmarshal(req.Data, &d)
			return Identity{User: d.Name}, nil
		}})
		a := dialHub(t, url, `{"name":"ana"}`)
		ra := subscribeResultOf(t, a.call(map[string]any{"op": "subscribe", "room": "p", "presence": true}))
		if len(ra.Publications) != 0 {
			t.Fatalf("publications in an empty room: %v", ra.Publications)
		}
		b := dialHub(t, url, `{"name":"ben"}`)
		rb := subscribeResultOf(t, b.call(map[string]any{"op": "subscribe", "room": "p", "presence": true}))
		if len(rb.Presence) != 1 || rb.Presence[0].User != "ana" || rb.Presence[0].Client != a.id {
			t.Fatalf("ben's subscribe result lists %+v, want ana alone", rb.Presence)
		}
		joined := func(c *testClient, user string) bool {
			return c.waitFor(5*time.Second, func(msgs []inMsg) bool {
				for _, m := range msgs {
					if m.Push == "join" && m.Client.User == user {
						return true
					}
				}
				return false
			})
		}
		if !joined(a, "ben") || !joined(a, "ana") {
			t.Fatal("ana did not see both joins")
		}
		// A second connection of the same user counts as one user.
		b2 := dialHub(t, url, `{"name":"ben"}`)
		b2.call(map[string]any{"op": "subscribe", "room": "p"})
		var pr presenceResult
		m := a.call(map[string]any{"op": "presence", "room": "p"})
		json.Unmarshal(m.Result, &pr)
		if pr.Stats.Clients != 3 || pr.Stats.Users != 2 || len(pr.Clients) != 3 {
			t.Fatalf("presence = %d clients listed, stats %+v; want 3 clients, 2 users", len(pr.Clients), pr.Stats)
		}
		b.c.Close(websocket.StatusNormalClosure, "")
		left := a.waitFor(5*time.Second, func(msgs []inMsg) bool {
			for _, m := range msgs {
				if m.Push == "leave" && m.Client.User == "ben" {
					return true
				}
			}
			return false
		})
		if !left {
			t.Fatal("ana did not see ben's first connection leave")
		}
		m = a.call(map[string]any{"op": "presence", "room": "p", "stats_only": true})
		pr = presenceResult{}
		json.Unmarshal(m.Result, &pr)
		if pr.Stats.Clients != 2 || pr.Stats.Users != 2 || pr.Clients != nil {
			t.Fatalf("after a leave: %+v, want 2 clients, 2 users, no list", pr)
		}
	})
}

func TestRefusals(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		_, url := startHub(t, mode, Options{
			ConnectTimeout: 200 * time.Millisecond,
			PublishRate:    1, PublishBurst: 2,
			MaxPublicationSize: 100,
			Authenticate: func(_ context.Context, req ConnectRequest) (Identity, error) {
				if req.Token != "good" {
					return Identity{}, &Error{Code: CodeUnauthorized, Message: "bad token"}
				}
				return Identity{User: "u"}, nil
			},
			Authorize: func(_ context.Context, who ClientInfo, room string, a Action) error {
				if room == "secret" && a != ActionHistory {
					return errors.New("internal detail the client must not see")
				}
				return nil
			},
		})
		t.Run("bad token", func(t *testing.T) {
			c := dialRaw(t, url)
			m := c.call(map[string]any{"op": "connect", "token": "bad"})
			if m.Error == nil || m.Error.Code != CodeUnauthorized || m.Error.Message != "bad token" {
				t.Fatalf("connect with a bad token: %+v", m.Error)
			}
			if code, _ := c.closeCode(5 * time.Second); code != CloseUnauthorized {
				t.Fatalf("close code %d, want %d", code, CloseUnauthorized)
			}
		})
		t.Run("command before connect", func(t *testing.T) {
			c := dialRaw(t, url)
			c.send(map[string]any{"op": "subscribe", "room": "r"})
			if code, _ := c.closeCode(5 * time.Second); code != CloseUnauthorized {
				t.Fatalf("close code %d, want %d", code, CloseUnauthorized)
			}
		})
		t.Run("no connect in time", func(t *testing.T) {
			c := dialRaw(t, url)
			if code, _ := c.closeCode(5 * time.Second); code != CloseConnectTimeout {
				t.Fatalf("close code %d, want %d", code, CloseConnectTimeout)
			}
		})
		t.Run("malformed command", func(t *testing.T) {
			c := dialRaw(t, url)
			c.call(map[string]any{"op": "connect", "token": "good"})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.c.Write(ctx, websocket.MessageText, []byte(`{"op": "publish", "id": -1`))
			if code, _ := c.closeCode(5 * time.Second); code != CloseBadRequest {
				t.Fatalf("close code %d, want %d", code, CloseBadRequest)
			}
		})
		t.Run("commands", func(t *testing.T) {
			c := dialRaw(t, url)
			if m := c.call(map[string]any{"op": "connect", "token": "good"}); m.Error != nil {
				t.Fatal(m.Error)
			}
			for _, tc := range []struct {
				cmd  map[string]any
				code int
			}{
				{map[string]any{"op": "dance"}, CodeBadRequest},
				{map[string]any{"op": "subscribe", "room": ""}, CodeBadRequest},
				{map[string]any{"op": "subscribe", "room": "bad\x01name"}, CodeBadRequest},
				{map[string]any{"op": "subscribe", "room": "secret"}, CodeForbidden},
				{map[string]any{"op": "publish", "room": "r", "data": strings.Repeat("x", 200)}, CodeTooLarge},
				{map[string]any{"op": "publish", "room": "r"}, CodeBadRequest},
			} {
				m := c.call(tc.cmd)
				if m.Error == nil || m.Error.Code != tc.code {
					t.Errorf("%v: error %+v, want code %d", tc.cmd, m.Error, tc.code)
				}
				if m.Error != nil && strings.Contains(m.Error.Message, "internal detail") {
					t.Errorf("%v: the hook's error text reached the client: %q", tc.cmd, m.Error.Message)
				}
			}
			if m := c.call(map[string]any{"op": "history", "room": "secret"}); m.Error != nil {
				t.Errorf("history of secret is allowed, got %+v", m.Error)
			}
			subscribeResultOf(t, c.call(map[string]any{"op": "subscribe", "room": "r"}))
			if m := c.call(map[string]any{"op": "subscribe", "room": "r"}); m.Error == nil || m.Error.Code != CodeConflict {
				t.Errorf("second subscribe: %+v, want 409", m.Error)
			}
			// The bucket holds 2: a burst of 5 gets at least 3 refusals with
			// 429, and the connection stays.
			refused := 0
			for i := 0; i < 5; i++ {
				m := c.call(map[string]any{"op": "publish", "room": "r", "data": i})
				if m.Error != nil && m.Error.Code == CodeRateLimited {
					refused++
				}
			}
			if refused < 3 {
				t.Errorf("%d of 5 quick publishes refused with 429, want at least 3", refused)
			}
			if m := c.call(map[string]any{"op": "presence", "room": "r"}); m.Error != nil {
				t.Errorf("the connection should stay usable after refusals: %+v", m.Error)
			}
		})
	})
}

func TestSubprotocolRefusal(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		_, url := startHub(t, mode, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("dial offering only mqtt: %v (response %v), want 400", err, resp)
		}
		// No subprotocol at all: version 1 JSON.
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"op":"connect"}`))
		msg, err := c.Read(ctx)
		if err != nil || !strings.Contains(string(msg.Data), `"client"`) {
			t.Fatalf("connect without a subprotocol: %s %v", msg.Data, err)
		}
	})
}
