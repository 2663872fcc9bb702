package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rollScale sizes TestRollingRestart.
type rollScale struct {
	rounds      int           // restarts of every node, one node at a time
	interval    time.Duration // between two publishes of one publisher
	subsPerNode int           // subscribers that start on each node
}

// TestRollingRestart is issue 11's "rolling restart" must-show: three
// duplex processes with clustered embedded NATS, R3 history and
// -shutdown-code service-restart; one keyed publisher per room, each on
// its own node, publishing continuously; subscribers on every node. The
// nodes are restarted one at a time, as an operator or an orchestrator
// does: SIGTERM, wait for the process to exit, start it again with the
// same flags (data directory, NATS name, route and client addresses), wait
// for /readyz to say 200, then the next. Each round starts with the node
// that leads the rooms' stream, so that a leader is stopped under load.
// The clients of the node that goes away reconnect to the next node up and
// recover from their last positions. The invariant is TestKillNodeMidStream's
// (see delivery): every subscriber gets every publication of its rooms
// exactly once, in order, at the acknowledged offset, and every recovery
// recovers.
//
// The short variant restarts each node once with 4 subscribers per node;
// DUPLEX_LONG=1 restarts each node 3 times with 15 per node.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs 3 processes")
	}
	scale := rollScale{rounds: 1, interval: 25 * time.Millisecond, subsPerNode: 4}
	if os.Getenv("DUPLEX_LONG") == "1" {
		// 40 publications a second per publisher: under the hub's rate
		// limit (DefaultPublishRate, 50 a second per connection).
		scale = rollScale{rounds: 3, interval: 25 * time.Millisecond, subsPerNode: 15}
	}
	bin := buildDuplex(t)
	start := time.Now()
	nodes := startNodes(t, bin, 3, "-shutdown-code", "service-restart")
	t.Logf("3 nodes listening after %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	d := &delivery{t: t, rooms: []string{"roll-a", "roll-b", "roll-c"}}
	for i := range len(nodes) * scale.subsPerNode {
		home := i % len(nodes)
		d.addSub(nodes[home].name, addrFrom(nodes, home), d.roomsOf(i))
	}
	d.subscribe(ctx)

	stop := make(chan struct{})
	publishing := make(chan struct{})
	var once sync.Once
	d.publish(ctx, func(i int) func() string { return addrFrom(nodes, i%len(nodes)) }, 0, scale.interval, stop, func(n int) {
		if n == 20 {
			once.Do(func() { close(publishing) })
		}
	})
	select {
	case <-publishing:
	case <-d.pubsDone:
		d.check()
		t.Fatal("the publishers ended before the restarts")
	}

	for round := range scale.rounds {
		restarted := map[*node]bool{}
		for range nodes {
			leader := agreedLeader(t, ctx, nodes)
			var next *node
			for _, nd := range nodes {
				if !restarted[nd] && (next == nil || nd.name == leader) {
					next = nd
				}
			}
			r := next.restart(t, ctx)
			restarted[next] = true
			t.Logf("round %d, %s (stream leader before: %s, after: %s): SIGTERM to exit %v (%v), to listening %v, to ready %v; %s",
				round+1, next.name, leader, agreedLeader(t, ctx, nodes), r.exit.Round(time.Millisecond), r.exitErr,
				r.listening.Round(time.Millisecond), r.ready.Round(time.Millisecond), r.notReady)
		}
	}
	time.Sleep(time.Second) // publishing goes on a moment with every node back
	close(stop)

	ok := d.check()
	for _, nd := range nodes {
		if w := warnings(nd); len(w) > 0 {
			t.Logf("%s warnings (all its processes): %s", nd.name, strings.Join(w, "; "))
		}
	}
	if !ok {
		for _, nd := range nodes {
			t.Logf("--- log of %s ---\n%s", nd.name, nd.allLogs())
		}
	}
}

// restarted says how a restart went: durations from the SIGTERM.
type restarted struct {
	exit, listening, ready time.Duration
	exitErr                error  // the process's exit
	notReady               string // what /readyz said before 200, and how often
}

// restart restarts the node's duplex process as an orchestrator does:
// SIGTERM, wait for the exit, start it again with the same flags, wait for
// /readyz to say 200. Meanwhile its clients go to other nodes (down).
func (n *node) restart(t *testing.T, ctx context.Context) restarted {
	t.Helper()
	var r restarted
	n.down.Store(true)
	defer n.down.Store(false)
	sigterm := time.Now()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-ctx.Done():
		t.Fatalf("%s did not exit after SIGTERM:\n%s", n.name, n.logs)
	}
	r.exit, r.exitErr = time.Since(sigterm), n.waitErr
	if n.waitErr != nil {
		t.Errorf("%s exited after SIGTERM with %v", n.name, n.waitErr)
	}
	n.past = append(n.past, n.logs)
	n.proc = startProc(t, n.bin, n.args...)
	awaitListening(t, []*node{n}, 90*time.Second)
	r.listening = time.Since(sigterm)
	notReady := map[string]int{}
	for {
		code, body := get("http://" + n.addr + "/readyz")
		if code == http.StatusOK {
			break
		}
		notReady[strings.TrimSpace(body)]++
		select {
		case <-n.exited:
			t.Fatalf("%s exited after its restart: %v\n%s", n.name, n.waitErr, n.logs)
		case <-ctx.Done():
			t.Fatalf("%s not ready after its restart (%v):\n%s", n.name, notReady, n.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.ready = time.Since(sigterm)
	r.notReady = "readyz before 200: none"
	if len(notReady) > 0 {
		r.notReady = "readyz before 200 (every 20ms): " + strings.Join(mapLines(notReady), "; ")
	}
	if lines := n.logs.linesWith("caught up with the NATS cluster"); len(lines) > 0 {
		r.notReady += "; " + lines[0][strings.Index(lines[0], "msg="):]
	}
	return r
}

// mapLines formats counts as "key: n".
func mapLines(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s: %d", k, v))
	}
	return out
}

// warnings counts the node's warning and error lines, of every process it
// ran, by their text without the time.
func warnings(n *node) []string {
	counts := map[string]int{}
	for _, l := range append(slices.Clone(n.past), n.logs) {
		for _, level := range []string{"level=WARN", "level=ERROR"} {
			for _, line := range l.linesWith(level) {
				_, rest, _ := strings.Cut(line, " ")
				counts[rest]++
			}
		}
	}
	return mapLines(counts)
}
