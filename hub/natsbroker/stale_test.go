package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A replica that lags, made on one server: the stream's own direct gets
// are turned off (AllowDirect false: the server drops its direct get
// subscription, stream.go:2883-2888) and a fake replica answers them in
// its place, in the server's wire format, from a copy of the room taken
// earlier. The leader's message gets and stream information stay the
// server's. History must come out as the leader has it, whatever the fake
// says; this is the case a cluster's follower makes now and then
// (TestClusterHistoryReadsItsWrites), made here every time.

type fakeReplica struct {
	t      testing.TB
	stream string
	mu     sync.Mutex
	msgs   []*storedMsg // a copy of the stream's messages, in order
	served int
	sub    *nats.Subscription
}

// startFakeReplica turns the stream's direct gets off and answers them
// from snap.
func startFakeReplica(t testing.TB, n *node, snap []*storedMsg) *fakeReplica {
	t.Helper()
	ctx := context.Background()
	js, _ := jetstream.New(n.nc)
	s, err := js.Stream(ctx, n.b.stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	f := &fakeReplica{t: t, stream: n.b.stream, msgs: snap}
	f.sub, err = n.nc.Subscribe("$JS.API.DIRECT.GET."+n.b.stream, f.serve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sub.Unsubscribe() })
	n.nc.Flush()
	return f
}

// snapshot copies the stream's messages on subj, as the leader has them.
func snapshot(t testing.TB, b *Broker, subj string) []*storedMsg {
	t.Helper()
	var out []*storedMsg
	_, err := b.readRoom(context.Background(), subj, 0, false, 0, true, func(m *storedMsg) bool {
		out = append(out, m)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fakeReplica) serve(m *nats.Msg) {
	var req directReq
	if json.Unmarshal(m.Data, &req) != nil {
		return
	}
	f.mu.Lock()
	f.served++
	var match []*storedMsg
	for _, sm := range f.msgs {
		switch {
		case req.LastFor != "":
			if sm.subj == req.LastFor {
				match = []*storedMsg{sm}
			}
		case sm.seq >= req.Seq && (req.NextFor == "" || sm.subj == req.NextFor):
			match = append(match, sm)
		}
	}
	f.mu.Unlock()
	reply := func(hdr nats.Header, data []byte) {
		msg := nats.NewMsg(m.Reply)
		msg.Header, msg.Data = hdr, data
		if err := m.RespondMsg(msg); err != nil {
			f.t.Error(err)
		}
	}
	if len(match) == 0 {
		reply(nats.Header{"Status": []string{"404"}}, nil)
		return
	}
	n := max(req.Batch, 1)
	var last uint64
	for i, sm := range match[:min(n, len(match))] {
		h := nats.Header{}
		for k, v := range sm.hdr {
			h[k] = v
		}
		h.Set(jetstream.StreamHeader, f.stream)
		h.Set(jetstream.SubjectHeader, sm.subj)
		h.Set(jetstream.SequenceHeader, strconv.FormatUint(sm.seq, 10))
		h.Set(jetstream.TimeStampHeaer, sm.time.UTC().Format(time.RFC3339Nano))
		if req.Batch > 0 {
			h.Set("Nats-Num-Pending", strconv.Itoa(len(match)-i-1))
			h.Set(jetstream.LastSequenceHeader, strconv.FormatUint(last, 10))
		}
		last = sm.seq
		reply(h, sm.data)
	}
	if req.Batch > 0 {
		reply(nats.Header{"Status": []string{"204"}, "Nats-Num-Pending": []string{strconv.Itoa(max(len(match)-n, 0))}}, nil)
	}
}

func TestHistoryCheckedAgainstLeader(t *testing.T) {
	ctx := context.Background()
	pub := func(b *Broker, room string, i int) hub.Position {
		t.Helper()
		return publish(t, b, room, fmt.Sprint(i))
	}
	datasOf := func(h hub.History) string { return datas(h.Publications) }

	t.Run("lagging tail", func(t *testing.T) {
		n := newNode(t, "", Options{})
		var ps []hub.Position
		for i := range 5 {
			ps = append(ps, pub(n.b, "r", i))
		}
		f := startFakeReplica(t, n, snapshot(t, n.b, n.b.roomSubject("r")))
		for i := 5; i < 9; i++ {
			ps = append(ps, pub(n.b, "r", i))
		}
		// The fake has 0..4; the leader 0..8.
		h := history(t, n.b, "r", hub.HistoryQuery{Since: &ps[2], Limit: 100})
		if datasOf(h) != "3 4 5 6 7 8 " || h.Latest != ps[8] || h.Publications[0].Prev != ps[2].Offset || h.Publications[3].Prev != ps[5].Offset {
			t.Fatalf("since 2: %q, latest %+v", datasOf(h), h.Latest)
		}
		h = history(t, n.b, "r", hub.HistoryQuery{Limit: 3, Reverse: true})
		if datasOf(h) != "8 7 6 " || h.Latest != ps[8] {
			t.Fatalf("reverse: %q", datasOf(h))
		}
		h = history(t, n.b, "r", hub.HistoryQuery{Since: &ps[7]})
		if len(h.Publications) != 0 || h.Latest != ps[8] {
			t.Fatalf("since 7, limit 0: %+v", h)
		}
		// A limit the stale copy can fill needs nothing more.
		before := n.b.fallbacks.Load()
		h = history(t, n.b, "r", hub.HistoryQuery{Since: &ps[0], Limit: 2})
		if datasOf(h) != "1 2 " || n.b.fallbacks.Load() != before {
			t.Fatalf("since 0, limit 2: %q, %d fallbacks", datasOf(h), n.b.fallbacks.Load()-before)
		}
		if f.served == 0 || n.b.fallbacks.Load() == 0 {
			t.Fatalf("the fake answered %d direct gets; %d fallbacks", f.served, n.b.fallbacks.Load())
		}
	})

	t.Run("purged on the leader", func(t *testing.T) {
		n := newNode(t, "", Options{})
		var ps []hub.Position
		for i := range 5 {
			ps = append(ps, pub(n.b, "r", i))
		}
		startFakeReplica(t, n, snapshot(t, n.b, n.b.roomSubject("r")))
		if err := n.b.Purge(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		after := pub(n.b, "r", 5)
		// The fake still has 0..4 and no marker: a limit it can fill, a
		// read to the end, a read from the room's start.
		for _, q := range []hub.HistoryQuery{{Since: &ps[1], Limit: 1}, {Since: &ps[1], Limit: 100}, {Since: &ps[1]}} {
			if _, err := n.b.History(ctx, "r", q); !errors.Is(err, hub.ErrUnrecoverable) {
				t.Fatalf("since 1 (limit %d) after a purge the replica has not seen: %v", q.Limit, err)
			}
		}
		h := history(t, n.b, "r", hub.HistoryQuery{Limit: 2})
		if datasOf(h) != "5 " || h.Latest != after {
			t.Fatalf("oldest after the purge: %q", datasOf(h))
		}
	})

	t.Run("replica lacks Since", func(t *testing.T) {
		n := newNode(t, "", Options{})
		var ps []hub.Position
		for i := range 6 {
			ps = append(ps, pub(n.b, "r", i))
		}
		// A replica whose copy lost 0..2 (say, aged out on its clock)
		// while the leader has them: it must not be taken to vouch for
		// Since 1, nor to start the room at 3.
		snap := snapshot(t, n.b, n.b.roomSubject("r"))
		startFakeReplica(t, n, snap[3:])
		h := history(t, n.b, "r", hub.HistoryQuery{Since: &ps[1], Limit: 100})
		if datasOf(h) != "2 3 4 5 " {
			t.Fatalf("since 1: %q", datasOf(h))
		}
		h = history(t, n.b, "r", hub.HistoryQuery{Limit: 2})
		if datasOf(h) != "0 1 " {
			t.Fatalf("oldest: %q", datasOf(h))
		}
	})
}
