package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// callHub sends one command and returns its reply's result; pushes that
// come before the reply go to push. An error reply is returned as a
// *hub.Error.
func callHub(ctx context.Context, c *websocket.Conn, cmd map[string]any, push func([]byte)) (json.RawMessage, error) {
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

// hubCall sends one command of the hub's protocol with id and returns its
// reply's result, failing the test on an error, an error reply or a reply
// to another command.
func hubCall(t *testing.T, ctx context.Context, c *websocket.Conn, id int, cmd map[string]any) json.RawMessage {
	t.Helper()
	cmd["id"] = id
	res, err := callHub(ctx, c, cmd, nil)
	if err != nil {
		b, _ := json.Marshal(cmd)
		t.Fatalf("%s: %v", b, err)
	}
	return res
}

// hubSubscribed is the result of a subscribe command.
type hubSubscribed struct {
	Position     hub.Position
	Recovered    *bool
	Publications []struct {
		Offset uint64
		Epoch  string
		Data   json.RawMessage
	}
}

func dialHub(t *testing.T, ctx context.Context, addr string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/chat/hub", &websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	hubCall(t, ctx, c, 1, map[string]any{"op": "connect", "data": map[string]string{"name": "ana"}})
	return c
}

// By default duplex keeps the rooms in an embedded NATS server with a file
// store under -data-dir: a restart keeps the history and its positions, and
// a client that comes back with its last position recovers what it missed.
func TestHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-data-dir", dir}, nil)
	c := dialHub(t, ctx, srv.addr)
	var positions []hub.Position
	for i := 1; i <= 3; i++ {
		var res struct{ Position hub.Position }
		json.Unmarshal(hubCall(t, ctx, c, i+1, map[string]any{"op": "publish", "room": "kept", "data": map[string]int{"n": i}}), &res)
		positions = append(positions, res.Position)
	}
	c.Close(websocket.StatusNormalClosure, "")
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.logs.linesWith("embedded NATS server", "data_dir=")); n != 1 {
		t.Errorf("%d log lines about the embedded NATS server's data dir, want 1:\n%s", n, srv.logs)
	}

	srv2 := startRun(t, []string{"-addr", "127.0.0.1:0", "-data-dir", dir}, nil)
	c2 := dialHub(t, ctx, srv2.addr)
	var res hubSubscribed
	json.Unmarshal(hubCall(t, ctx, c2, 2, map[string]any{"op": "subscribe", "room": "kept", "since": positions[0]}), &res)
	if res.Recovered == nil || !*res.Recovered || len(res.Publications) != 2 {
		t.Fatalf("after the restart, subscribe since %+v: recovered %v, %d publications; want the 2 after it", positions[0], res.Recovered, len(res.Publications))
	}
	for i, p := range res.Publications {
		want := positions[i+1]
		if p.Offset != want.Offset || p.Epoch != want.Epoch || string(p.Data) != fmt.Sprintf(`{"n":%d}`, i+2) {
			t.Fatalf("recovered publication %d: %d/%s %s, want %+v", i, p.Offset, p.Epoch, p.Data, want)
		}
	}
	if res.Position != positions[2] {
		t.Fatalf("position after the restart %+v, want %+v (same epoch, same offsets)", res.Position, positions[2])
	}
}
