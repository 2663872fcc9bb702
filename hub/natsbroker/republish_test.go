package natsbroker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The design rests on what nats-server puts in a republished message's
// Nats-Last-Sequence: the sequence of the last message stored on the SAME
// subject when this one was stored (stream.go, processJetStreamMsg: "If we
// are republishing grab last sequence for this exact subject", via
// store.LoadLastMsg(subject)), 0 when there is none. This test shows it on
// a raw stream, without the broker: interleaved subjects chain separately,
// a count limit does not break the chain (the previous message is still
// stored when the next one's header is made), and what is gone from the
// subject (purged, aged out) is not named: after a purge the next message
// says 0. The last point is why the broker cannot vouch for a room whose
// every message has aged out (see the package doc).
func TestRePublishLastSequenceIsPerSubject(t *testing.T) {
	n := newNode(t, "", Options{})
	js, err := jetstream.New(n.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.*"}, MaxMsgsPerSubject: 2, MaxAge: time.Second,
		Storage:   jetstream.MemoryStorage,
		RePublish: &jetstream.RePublish{Source: "raw.*", Destination: "rp.{{wildcard(1)}}.x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *nats.Msg, 100)
	sub, err := n.nc.ChanSubscribe("rp.*.x", got)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	n.nc.Flush()

	lastOn := map[string]uint64{}
	check := func(subj string) {
		t.Helper()
		ack, err := js.Publish(ctx, "raw."+subj, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			seq, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			prev, _ := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
			if m.Subject != "rp."+subj+".x" || seq != ack.Sequence {
				t.Fatalf("republished %s seq %d, want rp.%s.x seq %d", m.Subject, seq, subj, ack.Sequence)
			}
			if prev != lastOn[subj] {
				t.Fatalf("%s seq %d: Nats-Last-Sequence %d, want %d (the previous on the same subject)", subj, seq, prev, lastOn[subj])
			}
		case <-time.After(5 * time.Second):
			t.Fatal("nothing republished")
		}
		lastOn[subj] = ack.Sequence
	}
	for _, subj := range []string{"a", "b", "a", "c", "b", "a", "a", "a", "c", "b"} {
		check(subj) // "a" goes past the count limit of 2: still a chain
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject("raw.a")); err != nil {
		t.Fatal(err)
	}
	lastOn["a"] = 0 // the purged messages are not named
	check("a")
	time.Sleep(2500 * time.Millisecond) // MaxAge 1s: all of it ages out
	lastOn["b"] = 0
	check("b")
}
