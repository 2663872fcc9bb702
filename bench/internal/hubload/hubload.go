// Package hubload is the load of the hub-nats scenario: hub protocol clients
// (hub/PROTOCOL.md) against one or several duplex nodes. Subscribers are
// spread over the nodes; publishers are on the first node and publish at a
// fixed rate, open loop, so that a slow server shows as lag rather than as a
// slower publisher. Every publication carries its phase, its sequence number
// and its intended send time; every subscriber counts what it got of each
// phase and records each delivery's lag (receive time minus that send time).
//
// It is not the raw epoll generator of package loadgen: that one has a single
// server address and a publisher that is not a hub client (no publish
// command, no reply, no rate limit). Here publishes go through the protocol,
// with a key and a reply, as an application's would; a goroutine per
// connection is the price, and the report gives the generator's CPU time so
// that the reader can see it is not the bottleneck.
package hubload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/duplexws/duplex/websocket"

	"github.com/duplexws/duplex/bench/internal/hexstamp"
)

// Config is one load run: the subscribers, the publishers and the phases.
type Config struct {
	Nodes []string // host:port of each node; publishers go to Nodes[0]
	Path  string   // the hub's WebSocket path; default /chat/hub

	Subs       int // subscribers of the fan-out room, spread round-robin over the nodes
	Publishers int // publisher connections on Nodes[0]; the hub limits each to 50 publishes/s
	Payload    int // bytes of each publication's data string (at least stampLen)

	Rate     float64       // latency phase: publishes per second
	Warmup   time.Duration // latency phase: publishing before the measured window
	Duration time.Duration // latency phase: the measured window

	// Throughput: each step publishes at a rate for StepDuration, then waits
	// up to Grace for every subscriber to have all of the step's messages.
	// The rates start at FanStart (the fan-out room) and SoloStart (the solo
	// room: one subscriber per node) and grow by StepFactor until a step
	// fails or MaxSteps have run.
	FanStart, SoloStart float64
	StepFactor          float64
	StepDuration, Grace time.Duration
	MaxSteps            int
}

// Rooms of the run.
const (
	FanRoom  = "fan"  // Subs subscribers
	SoloRoom = "solo" // one subscriber per node: the broker's path with little fan-out
)

func (c *Config) defaults() {
	if c.Path == "" {
		c.Path = "/chat/hub"
	}
	if c.Payload < stampLen {
		c.Payload = stampLen
	}
	if c.StepFactor <= 1 {
		c.StepFactor = 1.5
	}
	if c.MaxSteps == 0 {
		c.MaxSteps = 12
	}
}

// Event tells the driver where a run is, so that it can read the nodes'
// CPU time at the measured window's edges.
type Event struct {
	Kind  string // "ready", "measure-start", "measure-end", "step-start", "step-end"
	Phase string // the step's name for step events
}

// Lat is a latency distribution in microseconds.
type Lat struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_us"`
	P90 float64 `json:"p90_us"`
	P99 float64 `json:"p99_us"`
	Max float64 `json:"max_us"`
}

// Step is one throughput step.
type Step struct {
	Room       string  `json:"room"`
	Rate       float64 `json:"rate"`       // publishes/s asked
	Published  int64   `json:"published"`  // publishes acknowledged
	Failed     int64   `json:"failed"`     // publishes answered with an error or not answered
	Want       int64   `json:"want"`       // deliveries due: (Published + unanswered) × the room's subscribers
	Delivered  int64   `json:"delivered"`  // deliveries that arrived by the end of the grace
	Seconds    float64 `json:"seconds"`    // the step's length
	AckedRate  float64 `json:"acked_rate"` // Published / Seconds
	Lag        Lat     `json:"lag"`
	Sustained  bool    `json:"sustained"`
	Why        string  `json:"why,omitempty"` // why not sustained
	NodesCPU   float64 `json:"nodes_cpu_seconds,omitempty"`
	DeliveryPS float64 `json:"deliveries_per_sec"` // Delivered / Seconds
}

// Result is what a run measured.
type Result struct {
	Subscribed  int     `json:"subscribed"`    // fan-out subscribers seated
	SetupSecs   float64 `json:"setup_seconds"` // connecting and subscribing everyone
	Seconds     float64 `json:"seconds"`       // latency phase: the measured window
	Published   int64   `json:"published"`     // latency phase: publishes acknowledged in the window
	Failed      int64   `json:"failed"`        // latency phase: publishes refused or unanswered
	Want        int64   `json:"want"`          // latency phase: deliveries due
	Delivered   int64   `json:"delivered"`     // latency phase: deliveries that arrived
	Lag         Lat     `json:"lag"`           // latency phase: every delivery
	LagByNode   []Lat   `json:"lag_by_node"`   // latency phase: deliveries to subscribers of each node
	Ack         Lat     `json:"ack"`           // latency phase: publish to its reply
	Steps       []Step  `json:"steps"`
	Lost        int     `json:"lost_connections"` // connections that ended during the run
	FirstErr    string  `json:"first_error,omitempty"`
	CPU         float64 `json:"cpu_seconds"` // the generator's CPU time, whole run
	LatencyCPU  float64 `json:"latency_cpu_seconds"`
	MaxFanRate  float64 `json:"max_fan_rate"`  // highest sustained step of the fan-out room
	MaxSoloRate float64 `json:"max_solo_rate"` // highest sustained step of the solo room
}

// stamp: "hn1:" phase (2 hex) seq (16 hex) sent ns (16 hex), then padding.
const (
	stampMark = "hn1:"
	stampLen  = len(stampMark) + 2 + 16 + 16
)

// phase numbers: 0 is the latency phase's warm-up, 1 its window, 2 the solo
// room's warm-up, steps from 3.
const (
	phaseWarmup     = 0
	phaseWindow     = 1
	phaseSoloWarmup = 2
	firstStep       = 3
	maxPhases       = 64
)

// sub is one subscriber connection's counters; only its reader writes them
// until the phase is read, after the grace.
type sub struct {
	node int
	room string
	mu   sync.Mutex
	got  [maxPhases]int64
	lags [maxPhases][]float32 // µs
}

type run struct {
	cfg   Config
	base  time.Time
	subs  []*sub
	pubs  []*publisher
	lost  atomic.Int32
	errMu sync.Mutex
	err   string
	seq   atomic.Uint64

	queued [maxPhases]int64 // publishes handed to the publishers, per phase; written by publish only
}

func (r *run) now() int64 { return int64(time.Since(r.base)) }

func (r *run) fail(err error) {
	r.lost.Add(1)
	r.errMu.Lock()
	if r.err == "" {
		r.err = err.Error()
	}
	r.errMu.Unlock()
}

// Run connects everyone, runs the latency phase and the throughput steps,
// and closes everything. events may be nil.
func Run(ctx context.Context, cfg Config, events func(Event)) (Result, error) {
	cfg.defaults()
	if len(cfg.Nodes) == 0 || cfg.Subs <= 0 || cfg.Publishers <= 0 {
		return Result{}, errors.New("hubload: need nodes, subscribers and publishers")
	}
	if events == nil {
		events = func(Event) {}
	}
	cpu0 := selfCPU()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run{cfg: cfg, base: time.Now()}
	var res Result
	start := time.Now()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// The fan-out room's subscribers, then one solo subscriber per node.
	type seat struct {
		node int
		room string
	}
	var seats []seat
	for i := range cfg.Subs {
		seats = append(seats, seat{i % len(cfg.Nodes), FanRoom})
	}
	for n := range cfg.Nodes {
		seats = append(seats, seat{n, SoloRoom})
	}
	sem := make(chan struct{}, 64) // handshakes at once
	errc := make(chan error, len(seats)+cfg.Publishers)
	for _, s := range seats {
		sb := &sub{node: s.node, room: s.room}
		r.subs = append(r.subs, sb)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			c, err := r.dialSubscriber(ctx, sb)
			<-sem
			errc <- err
			if err != nil {
				return
			}
			r.readPushes(ctx, c, sb)
		}()
	}
	for i := range cfg.Publishers {
		p := &publisher{r: r, id: i, work: make(chan job, 256)}
		r.pubs = append(r.pubs, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			err := p.dial(ctx)
			<-sem
			errc <- err
			if err == nil {
				p.run(ctx)
			}
		}()
	}
	for range len(seats) + cfg.Publishers {
		if err := <-errc; err != nil {
			return res, fmt.Errorf("hubload: setting up: %w", err)
		}
	}
	res.Subscribed = cfg.Subs
	res.SetupSecs = time.Since(start).Seconds()
	events(Event{Kind: "ready"})

	// Latency phase. The warm-up publishes to both rooms and waits for
	// everything it sent, so that the window does not see what the first
	// publishes set up (a stream's creation and, with replicas, its RAFT
	// group's election).
	r.publish(ctx, SoloRoom, phaseSoloWarmup, cfg.Rate, cfg.Warmup/2)
	r.publish(ctx, FanRoom, phaseWarmup, cfg.Rate, cfg.Warmup/2)
	r.settle(ctx, SoloRoom, phaseSoloWarmup, 30*time.Second)
	r.settle(ctx, FanRoom, phaseWarmup, 30*time.Second)
	events(Event{Kind: "measure-start"})
	c0 := selfCPU()
	secs := r.publish(ctx, FanRoom, phaseWindow, cfg.Rate, cfg.Duration)
	events(Event{Kind: "measure-end"})
	res.LatencyCPU = selfCPU() - c0
	res.Seconds = secs
	st := r.settle(ctx, FanRoom, phaseWindow, cfg.Grace)
	res.Published, res.Failed, res.Want, res.Delivered = st.Published, st.Failed, st.Want, st.Delivered
	res.Lag = st.Lag
	for n := range cfg.Nodes {
		res.LagByNode = append(res.LagByNode, r.lags(FanRoom, phaseWindow, n))
	}
	res.Ack = r.acks(phaseWindow)

	// Throughput: the solo room first, while every connection is fresh,
	// then the fan-out room.
	phase := firstStep
	for _, room := range []struct {
		name  string
		start float64
		max   *float64
	}{{SoloRoom, cfg.SoloStart, &res.MaxSoloRate}, {FanRoom, cfg.FanStart, &res.MaxFanRate}} {
		rate := room.start
		for i := 0; i < cfg.MaxSteps && rate > 0 && phase < maxPhases && ctx.Err() == nil; i++ {
			name := fmt.Sprintf("%s@%.0f", room.name, rate)
			events(Event{Kind: "step-start", Phase: name})
			r.publish(ctx, room.name, phase, rate, cfg.StepDuration)
			events(Event{Kind: "step-end", Phase: name})
			secs := cfg.StepDuration.Seconds() // the rates are over the intended time: lateness shows as lag
			st := r.settle(ctx, room.name, phase, cfg.Grace)
			st.Room, st.Rate, st.Seconds = room.name, rate, secs
			st.AckedRate = float64(st.Published) / secs
			st.DeliveryPS = float64(st.Delivered) / secs
			st.Sustained, st.Why = r.judge(st)
			res.Steps = append(res.Steps, st)
			phase++
			if !st.Sustained {
				break
			}
			*room.max = rate
			rate = math.Round(rate * cfg.StepFactor)
		}
		time.Sleep(cfg.Grace) // let a failed step's backlog drain before the next room
	}
	res.Lost = int(r.lost.Load())
	res.FirstErr = r.err
	res.CPU = selfCPU() - cpu0
	return res, nil
}

// maxStepLagP99 is the highest delivery lag p99 (µs) of a sustained step: a
// server that keeps up delivers in milliseconds; one that builds a backlog
// over the step shows a lag of the order of the step's length.
const maxStepLagP99 = 500e3

// judge says whether a step was sustained: no connection lost, every publish
// acknowledged, every subscriber had every message by the end of the grace,
// and the lag's p99 stayed under maxStepLagP99 (a publisher that fell behind
// shows there too: the stamps are the intended send times).
func (r *run) judge(st Step) (bool, string) {
	switch {
	case r.lost.Load() > 0:
		return false, "connection lost: " + r.err
	case st.Failed > 0:
		return false, fmt.Sprintf("%d publishes refused or unanswered", st.Failed)
	case st.Delivered < st.Want:
		return false, fmt.Sprintf("%d of %d deliveries by the end of the grace", st.Delivered, st.Want)
	case st.Lag.P99 > maxStepLagP99:
		return false, fmt.Sprintf("lag p99 %.0f ms: a backlog", st.Lag.P99/1e3)
	}
	return true, ""
}

// publish publishes to room at rate for d, spreading the publishes over the
// publishers round-robin; each publish carries its intended send time, so
// that a publisher that falls behind shows as lag. It returns the time it
// took.
func (r *run) publish(ctx context.Context, room string, phase int, rate float64, d time.Duration) float64 {
	if rate <= 0 || d <= 0 {
		return 0
	}
	start := time.Now()
	t0 := r.now()
	interval := float64(time.Second) / rate
	total := int(rate * d.Seconds())
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	next := 0
	for next < total {
		select {
		case <-ctx.Done():
			return time.Since(start).Seconds()
		case <-tick.C:
		}
		due := min(total, int(float64(r.now()-t0)/interval)+1)
		for ; next < due; next++ {
			at := t0 + int64(float64(next)*interval)
			p := r.pubs[int(r.seq.Load())%len(r.pubs)]
			j := job{room: room, phase: phase, seq: r.seq.Add(1), at: at}
			r.queued[phase]++
			select {
			case p.work <- j:
			case <-ctx.Done():
				return time.Since(start).Seconds()
			}
		}
	}
	return time.Since(start).Seconds()
}

// settle waits until every publish of phase is answered and every
// subscriber of room has them all, or grace has passed, and counts.
func (r *run) settle(ctx context.Context, room string, phase int, grace time.Duration) Step {
	deadline := time.Now().Add(grace)
	var st Step
	for {
		st = Step{}
		for _, p := range r.pubs {
			p.mu.Lock()
			st.Published += p.acked[phase]
			st.Failed += p.failed[phase]
			p.mu.Unlock()
		}
		pending := r.queued[phase] - st.Published - st.Failed
		n := int64(0)
		for _, s := range r.subs {
			if s.room != room {
				continue
			}
			n++
			s.mu.Lock()
			st.Delivered += s.got[phase]
			s.mu.Unlock()
		}
		// A publish not yet answered may still be stored and delivered:
		// it is due too, so that Delivered never exceeds Want but for
		// duplicates.
		st.Want = (st.Published + pending) * n
		if (pending == 0 && st.Delivered >= st.Want) || time.Now().After(deadline) || ctx.Err() != nil {
			st.Failed += pending
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.Lag = r.lags(room, phase, -1)
	return st
}

// lags is the lag distribution of phase's deliveries in room, to the
// subscribers of one node (or all, node < 0).
func (r *run) lags(room string, phase, node int) Lat {
	var all []float32
	for _, s := range r.subs {
		if s.room != room || node >= 0 && s.node != node {
			continue
		}
		s.mu.Lock()
		all = append(all, s.lags[phase]...)
		s.mu.Unlock()
	}
	return latOf(all)
}

func (r *run) acks(phase int) Lat {
	var all []float32
	for _, p := range r.pubs {
		p.mu.Lock()
		all = append(all, p.ackLags[phase]...)
		p.mu.Unlock()
	}
	return latOf(all)
}

func latOf(v []float32) Lat {
	if len(v) == 0 {
		return Lat{}
	}
	slices.Sort(v)
	q := func(f float64) float64 { return float64(v[min(len(v)-1, int(f*float64(len(v))))]) }
	return Lat{N: len(v), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: float64(v[len(v)-1])}
}

func (r *run) dial(ctx context.Context, node int) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+r.cfg.Nodes[node]+r.cfg.Path,
		&websocket.DialOptions{Subprotocols: []string{"duplex.v1.json"}})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	if err := call(ctx, c, `{"id":1,"op":"connect","data":{"name":"bench"}}`, 1); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// call sends one command and waits for its reply (no push can come before
// it: the connection has no subscription yet, or this is the subscribe).
func call(ctx context.Context, c *websocket.Conn, cmd string, id int) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		return err
	}
	for {
		m, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var rep struct {
			ID    int             `json:"id"`
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(m.Data, &rep) != nil || rep.ID != id {
			continue
		}
		if rep.Error != nil {
			return fmt.Errorf("%s: %s", cmd, rep.Error)
		}
		return nil
	}
}

func (r *run) dialSubscriber(ctx context.Context, s *sub) (*websocket.Conn, error) {
	c, err := r.dial(ctx, s.node)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := call(cctx, c, `{"id":2,"op":"subscribe","room":"`+s.room+`"}`, 2); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// readPushes reads a subscriber's pushes until ctx ends, counting and timing
// every publication by the stamp in its data.
func (r *run) readPushes(ctx context.Context, c *websocket.Conn, s *sub) {
	defer c.CloseNow()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Errorf("subscriber on node %d: %w", s.node, err))
			}
			return
		}
		now := r.now()
		phase, _, at, ok := parseStamp(m.Data)
		if !ok {
			continue
		}
		s.mu.Lock()
		s.got[phase]++
		s.lags[phase] = append(s.lags[phase], float32(now-at)/1e3)
		s.mu.Unlock()
	}
}

// job is one publish to make.
type job struct {
	room  string
	phase int
	seq   uint64
	at    int64 // intended send time, ns since the run's base
}

// publisher is one publisher connection: a writer (run) and a reader of its
// replies, which come in the order of the commands.
type publisher struct {
	r    *run
	id   int
	c    *websocket.Conn
	work chan job

	mu       sync.Mutex
	inflight []job // sent, not yet answered, oldest first
	acked    [maxPhases]int64
	failed   [maxPhases]int64
	ackLags  [maxPhases][]float32
	nextID   int
}

func (p *publisher) dial(ctx context.Context) error {
	c, err := p.r.dial(ctx, 0)
	p.c, p.nextID = c, 2
	return err
}

func (p *publisher) run(ctx context.Context) {
	defer p.c.CloseNow()
	go p.readReplies(ctx)
	pad := bytes.Repeat([]byte{'x'}, p.r.cfg.Payload-stampLen)
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-p.work:
			p.mu.Lock()
			id := p.nextID
			p.nextID++
			p.inflight = append(p.inflight, j)
			p.mu.Unlock()
			buf = append(buf[:0], `{"id":`...)
			buf = strconv.AppendInt(buf, int64(id), 10)
			buf = append(buf, `,"op":"publish","room":"`...)
			buf = append(buf, j.room...)
			buf = append(buf, `","key":"`...)
			buf = strconv.AppendUint(buf, j.seq, 10)
			buf = append(buf, `","data":"`...)
			buf = appendStamp(buf, j.phase, j.seq, j.at)
			buf = append(buf, pad...)
			buf = append(buf, `"}`...)
			if err := p.c.Write(ctx, websocket.MessageText, buf); err != nil {
				if ctx.Err() == nil {
					p.r.fail(fmt.Errorf("publisher %d: %w", p.id, err))
				}
				return
			}
		}
	}
}

func (p *publisher) readReplies(ctx context.Context) {
	for {
		m, err := p.c.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.r.fail(fmt.Errorf("publisher %d: %w", p.id, err))
			}
			return
		}
		now := p.r.now()
		var rep struct {
			ID    int             `json:"id"`
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(m.Data, &rep) != nil || rep.ID == 0 {
			continue
		}
		p.mu.Lock()
		if len(p.inflight) > 0 {
			j := p.inflight[0]
			p.inflight = p.inflight[1:]
			if rep.Error != nil {
				p.failed[j.phase]++
				p.r.errMu.Lock()
				if p.r.err == "" {
					p.r.err = "publish: " + string(rep.Error)
				}
				p.r.errMu.Unlock()
			} else {
				p.acked[j.phase]++
				p.ackLags[j.phase] = append(p.ackLags[j.phase], float32(now-j.at)/1e3)
			}
		}
		p.mu.Unlock()
	}
}

func appendStamp(b []byte, phase int, seq uint64, at int64) []byte {
	b = append(b, stampMark...)
	b = hexstamp.Append(b, uint64(phase), 2)
	b = hexstamp.Append(b, seq, 16)
	return hexstamp.Append(b, uint64(at), 16)
}

// parseStamp finds the stamp in a message, wherever the hub put the data.
func parseStamp(m []byte) (phase int, seq uint64, at int64, ok bool) {
	i := bytes.Index(m, []byte(stampMark))
	if i < 0 || len(m) < i+stampLen {
		return 0, 0, 0, false
	}
	s := m[i+len(stampMark) : i+stampLen]
	ph, ok1 := hexstamp.Parse(s[:2])
	sq, ok2 := hexstamp.Parse(s[2:18])
	t, ok3 := hexstamp.Parse(s[18:34])
	if !ok1 || !ok2 || !ok3 || ph >= maxPhases {
		return 0, 0, 0, false
	}
	return int(ph), sq, int64(t), true
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
