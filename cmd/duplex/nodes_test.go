package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// buildDuplex builds the duplex binary into a temporary directory, as
// TestSIGTERM does, and returns its path.
func buildDuplex(t *testing.T) string {
	t.Helper()
	return goBuild(t, "duplex", ".")
}

// goBuild builds the package pkg of this module into a temporary directory
// as name and returns its path.
func goBuild(t *testing.T, name, pkg string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// proc is one process started by a test; it is killed at the end of the
// test, whatever happened.
type proc struct {
	logs    *logSink
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process is reaped
	waitErr error         // the process's end, once exited is closed
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{logs: newLogSink(), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "DUPLEX_LOG_LEVEL=info")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and waits for the process to be reaped.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// node is one duplex process of a cluster, with, when NATS is external,
// the nats-server it connects to: one "machine".
type node struct {
	name    string // its -nats-name, or its nats-server's name
	addr    string // where it serves HTTP (-addr), the same across restarts
	natsURL string // its NATS server's client listener
	bin     string // the duplex binary
	args    []string
	*proc               // the duplex process; a restart replaces it
	past    []*logSink  // the logs of the processes restart replaced
	nats    *proc       // its external nats-server, or nil
	down    atomic.Bool // its clients go to another node
}

// kill sends SIGKILL to the node's processes and waits for them.
func (n *node) kill() {
	n.proc.kill()
	if n.nats != nil {
		n.nats.kill()
	}
}

// allLogs is the node's output, of every process it ran.
func (n *node) allLogs() string {
	var b strings.Builder
	for _, l := range n.past {
		b.WriteString(l.String())
		b.WriteString("--- restarted ---\n")
	}
	b.WriteString(n.logs.String())
	return b.String()
}

// startNodes starts n duplex processes of bin as one cluster of embedded
// NATS servers with R3 history, all at once (each waits for the cluster's
// JetStream), with extra flags, and returns them once every one listens.
func startNodes(t *testing.T, bin string, n int, extra ...string) []*node {
	t.Helper()
	routes := freeAddrs(t, n)
	clients := freeAddrs(t, n)
	addrs := freeAddrs(t, n)
	nodes := make([]*node, n)
	for i := range n {
		dir := t.TempDir() // before the process's Cleanup: removed after the kill
		nd := &node{name: fmt.Sprintf("n%d", i), addr: addrs[i], natsURL: "nats://" + clients[i], bin: bin}
		nd.args = append([]string{"-addr", addrs[i], "-data-dir", dir,
			"-nats-cluster", routes[i], "-nats-routes", strings.Join(routes, ","),
			"-nats-name", nd.name, "-nats-replicas", "3", "-nats-listen", clients[i]}, extra...)
		nd.proc = startProc(t, bin, nd.args...)
		nodes[i] = nd
	}
	awaitListening(t, nodes, 90*time.Second)
	return nodes
}

// startExternalNodes starts n nats-server processes (the module's own
// nats-server, built) as one JetStream cluster, then n duplex processes of
// bin with R3 history, each connected to its own nats-server with
// -nats-url, and returns them once every one listens.
func startExternalNodes(t *testing.T, bin string, n int, extra ...string) []*node {
	t.Helper()
	natsBin := goBuild(t, "nats-server", "github.com/nats-io/nats-server/v2")
	routes := freeAddrs(t, n)
	clients := freeAddrs(t, n)
	monitors := freeAddrs(t, n)
	addrs := freeAddrs(t, n)
	var routeURLs []string
	for _, r := range routes {
		routeURLs = append(routeURLs, "nats-route://"+r)
	}
	nodes := make([]*node, n)
	for i := range n {
		dir := t.TempDir()
		nd := &node{name: fmt.Sprintf("n%d", i), addr: addrs[i], natsURL: "nats://" + clients[i], bin: bin}
		_, port, _ := strings.Cut(clients[i], ":")
		_, mport, _ := strings.Cut(monitors[i], ":")
		nd.nats = startProc(t, natsBin, "-a", "127.0.0.1", "-p", port, "-m", mport, "-js", "-sd", dir,
			"--name", nd.name, "--cluster_name", "duplex", "--cluster", "nats://"+routes[i],
			"--routes", strings.Join(routeURLs, ","))
		nodes[i] = nd
	}
	// The duplex nodes' New needs the cluster's JetStream: wait until every
	// server's own health check says it is current.
	deadline := time.Now().Add(90 * time.Second)
	for i, nd := range nodes {
		for !httpOK("http://" + monitors[i] + "/healthz") {
			select {
			case <-nd.nats.exited:
				t.Fatalf("nats-server %s exited: %v\n%s", nd.name, nd.nats.waitErr, nd.nats.logs)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("nats-server %s not healthy within 90s:\n%s", nd.name, nd.nats.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i, nd := range nodes {
		nd.args = append([]string{"-addr", addrs[i], "-data-dir", t.TempDir(), "-nats-url", nd.natsURL,
			"-nats-replicas", "3"}, extra...)
		nd.proc = startProc(t, bin, nd.args...)
	}
	awaitListening(t, nodes, 90*time.Second)
	return nodes
}

// awaitListening waits until every node's duplex process listens.
func awaitListening(t *testing.T, nodes []*node, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for _, nd := range nodes {
		select {
		case <-nd.logs.listening:
		case <-nd.exited:
			t.Fatalf("node %s exited before listening: %v\n%s", nd.name, nd.waitErr, nd.logs)
		case <-deadline:
			t.Fatalf("node %s did not listen within %v:\n%s", nd.name, timeout, nd.logs)
		}
	}
}

// get returns the status and body of a GET of url (0 when it fails).
func get(url string) (int, string) {
	res, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// httpOK says whether a GET of url answers 200.
func httpOK(url string) bool {
	code, _ := get(url)
	return code == http.StatusOK
}

// addrFrom returns the address a client of nodes[home] uses: its home's,
// or while that is down the next node's that is up.
func addrFrom(nodes []*node, home int) func() string {
	return func() string {
		for i := range nodes {
			if nd := nodes[(home+i)%len(nodes)]; !nd.down.Load() {
				return nd.addr
			}
		}
		return nodes[home].addr
	}
}

// streamLeader returns the name of the server that leads the rooms' stream,
// asked through a NATS client listener.
func streamLeader(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := js.Stream(ctx, "DUPLEX")
		if err == nil {
			if info := s.CachedInfo(); info.Cluster != nil && info.Cluster.Leader != "" {
				return info.Cluster.Leader
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no leader for the stream DUPLEX: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// agreedLeader returns the stream's leader once every node up names the
// same: a member that is not the leader may answer stream info with a
// view of its own.
func agreedLeader(t *testing.T, ctx context.Context, nodes []*node) string {
	t.Helper()
	for {
		leader, agreed := "", true
		for _, nd := range nodes {
			if nd.down.Load() {
				continue
			}
			l := streamLeader(t, ctx, nd.natsURL)
			if leader == "" {
				leader = l
			}
			agreed = agreed && l == leader
		}
		if agreed {
			return leader
		}
	}
}

// killScale sizes TestKillNodeMidStream.
type killScale struct {
	perRoom     int           // publications per room
	interval    time.Duration // between two publishes of one publisher
	subsPerNode int           // subscribers on each of B and C
}

// TestKillNodeMidStream is issue 11's first "must show": three duplex
// processes with R3 history; publishers on node A publish numbered
// messages, with idempotency keys, into 2 rooms; subscribers on B and C; B
// is killed with SIGKILL in the middle of the stream (B is the node that
// leads the rooms' stream, so that its loss costs an election); B's clients
// reconnect to C and recover from their last positions. Every subscriber
// must get every publication of its rooms exactly once and in order, at
// the offset its publisher was acknowledged, and every recovery must
// succeed (see delivery).
//
// embedded: the nodes' own embedded NATS servers, clustered by routes.
// external: three nats-server processes (the module's own nats-server,
// built by the test) as a JetStream cluster, each duplex node connected to
// its own with -nats-url; killing "machine" B kills duplex B and its
// nats-server, which leads the stream.
//
// The short variant (2 x 200 publications, 10 subscribers per node) always
// runs unless -short; DUPLEX_LONG=1 runs 2 x 1500 with 20 per node.
func TestKillNodeMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs 3 processes or 6")
	}
	scale := killScale{perRoom: 200, interval: 25 * time.Millisecond, subsPerNode: 10}
	if os.Getenv("DUPLEX_LONG") == "1" {
		scale = killScale{perRoom: 1500, interval: 25 * time.Millisecond, subsPerNode: 20}
	}
	bin := buildDuplex(t)
	for _, nats := range []struct {
		name  string
		start func(t *testing.T, bin string, n int, extra ...string) []*node
	}{
		{"embedded", startNodes},
		{"external", startExternalNodes},
	} {
		t.Run(nats.name, func(t *testing.T) {
			start := time.Now()
			nodes := nats.start(t, bin, 3)
			t.Logf("3 nodes listening after %v", time.Since(start).Round(time.Millisecond))
			killMidStream(t, nodes, scale)
		})
	}
}

// killMidStream is TestKillNodeMidStream on nodes.
func killMidStream(t *testing.T, nodes []*node, scale killScale) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// B is the stream's leader; A and C the two others.
	leader := agreedLeader(t, ctx, nodes)
	var a, b, c *node
	for _, nd := range nodes {
		switch {
		case nd.name == leader:
			b = nd
		case a == nil:
			a = nd
		default:
			c = nd
		}
	}
	if b == nil {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}
	t.Logf("A=%s (%s) publishers, B=%s (%s) stream leader, killed, C=%s (%s)", a.name, a.addr, b.name, b.addr, c.name, c.addr)
	abc := []*node{a, b, c} // addrFrom(abc, 1): B, then C once B is down

	d := &delivery{t: t, rooms: []string{"kill-a", "kill-b"}}
	for i := range 2 * scale.subsPerNode {
		home := 1 + i/scale.subsPerNode // B, then C
		d.addSub(abc[home].name, addrFrom(abc, home), d.roomsOf(i))
	}
	d.subscribe(ctx) // everyone before the first publication

	killNow := make(chan struct{})
	var killOnce sync.Once
	d.publish(ctx, func(int) func() string { return addrFrom(abc, 0) }, scale.perRoom, scale.interval, nil, func(n int) {
		if n == scale.perRoom/2 {
			killOnce.Do(func() { close(killNow) })
		}
	})
	select {
	case <-killNow:
		killAt := time.Now()
		b.down.Store(true) // before the kill: B's clients reconnect to C
		b.kill()
		t.Logf("killed %s (SIGKILL) at %v into the stream: %v", b.name, killAt.Sub(d.pubs[0].started).Round(time.Millisecond), b.waitErr)
	case <-d.pubsDone:
		d.check()
		t.Fatal("the publishers ended before the kill")
	}
	<-d.pubsDone
	t.Logf("stream leader after the kill: %s", streamLeader(t, ctx, c.natsURL))

	ok := d.check()
	for _, nd := range []*node{a, c} {
		if lines := nd.logs.linesWith("level=WARN"); len(lines) > 0 {
			t.Logf("%s warnings:\n%s", nd.name, strings.Join(lines, "\n"))
		}
		if lines := nd.logs.linesWith("level=ERROR"); len(lines) > 0 {
			t.Logf("%s errors:\n%s", nd.name, strings.Join(lines, "\n"))
		}
	}
	if !ok {
		for _, nd := range nodes {
			t.Logf("--- log of %s ---\n%s", nd.name, nd.allLogs())
		}
	}
}
