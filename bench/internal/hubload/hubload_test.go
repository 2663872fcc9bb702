package hubload

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
)

// Two "nodes" that serve one hub (its memory broker): every subscriber, on
// either, gets every publication of its room, the lags are counted per node,
// and every publish has its acknowledgement timed.
func TestRunAgainstAHub(t *testing.T) {
	h := hub.New(hub.Options{})
	defer h.Shutdown(context.Background())
	var nodes []string
	for range 2 {
		srv := httptest.NewServer(h)
		defer srv.Close()
		nodes = append(nodes, strings.TrimPrefix(srv.URL, "http://"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	res, err := Run(ctx, Config{Nodes: nodes, Path: "/", Subs: 6, Publishers: 2, Payload: 64,
		Rate: 40, Warmup: 200 * time.Millisecond, Duration: 400 * time.Millisecond,
		FanStart: 20, SoloStart: 20, StepFactor: 2, StepDuration: 300 * time.Millisecond, Grace: time.Second, MaxSteps: 2},
		func(e Event) { got = append(got, e.Kind) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost > 0 || res.FirstErr != "" {
		t.Fatalf("lost %d connections: %s", res.Lost, res.FirstErr)
	}
	if res.Published != 16 || res.Want != 6*16 || res.Delivered != res.Want || res.Lag.N != int(res.Want) {
		t.Fatalf("latency phase: %d published (%d failed: %s), %d of %d delivered, %d lags; want 16, 96 of 96, 96", res.Published, res.Failed, res.FirstErr, res.Delivered, res.Want, res.Lag.N)
	}
	if len(res.LagByNode) != 2 || res.LagByNode[0].N != 48 || res.LagByNode[1].N != 48 {
		t.Fatalf("lags by node: %+v; want 48 on each", res.LagByNode)
	}
	if res.Ack.N != 16 || res.Ack.P50 <= 0 {
		t.Fatalf("acks: %+v", res.Ack)
	}
	// Whether a step is sustained depends on its lag, so on the machine's
	// load: only the counts are checked, and that a step that was not
	// sustained says it was the lag.
	rooms := map[string]int{}
	for _, st := range res.Steps {
		rooms[st.Room]++
		subs := int64(2) // solo: one per node
		if st.Room == FanRoom {
			subs = 6
		}
		if st.Want != st.Published*subs || st.Delivered != st.Want || st.Published != int64(st.Rate*0.3) ||
			!st.Sustained && !strings.HasPrefix(st.Why, "lag p99") {
			t.Fatalf("step %+v", st)
		}
	}
	if rooms[SoloRoom] == 0 || rooms[FanRoom] == 0 || len(res.Steps) > 4 {
		t.Fatalf("steps %+v; want 1 or 2 per room", res.Steps)
	}
	want := "ready measure-start measure-end" + strings.Repeat(" step-start step-end", len(res.Steps))
	if got := strings.Join(got, " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}
func TestStamp(t *testing.T) {
	b := appendStamp([]byte(`{"push":"pub","data":"`), 5, 1<<40+3, 123456789)
	phase, seq, at, ok := parseStamp(append(b, `xx"}`...))
	if !ok || phase != 5 || seq != 1<<40+3 || at != 123456789 {
		t.Fatalf("%d %d %d %v", phase, seq, at, ok)
	}
	if _, _, _, ok := parseStamp([]byte(`{"data":"hn1:zz"}`)); ok {
		t.Fatal("parsed a broken stamp")
	}
}
