package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Issue 12's targets, evaluated from the run's figures.

// status is whether a target is met by the figures.
type status int

const (
	notMeasured status = iota // the run has not the cells the target needs
	met
	notMet
	// notMetNoise: not met, but in every cell that misses, the median's
	// confidence interval reaches the bound: the rounds cannot tell the
	// miss from their noise.
	notMetNoise
)

func (s status) String() string {
	switch s {
	case met:
		return "met"
	case notMet:
		return "**not met**"
	case notMetNoise:
		return "**not met**, within the noise"
	}
	return "not measured"
}

// target is one of the targets and what the run says of it.
type target struct {
	name   string
	status status
	figure string // the figures it was judged on
}

// Thresholds of the targets.
const (
	acceptOverFloor = 1.5  // Accept + goroutine, bytes per idle connection ÷ the TCP floor's
	openOverAccept  = 1.1  // Open ÷ Accept + goroutine
	eventsBytes     = 2048 // the event-loop mode, bytes per idle connection
	eventsConns     = 19000
	eventsEchoShare = 0.9 // the event-loop mode's echo msgs/s ÷ Open's
)

// check judges ratios, each of which must satisfy ok, and lists them.
type check struct {
	parts []string
	n     int
	bad   bool
	// clear: a cell misses beyond its noise (every miss but a paired one
	// whose median's interval reaches the bound).
	clear bool
}

func (c *check) add(label string, q float64, ok bool) {
	if math.IsNaN(q) {
		return
	}
	c.n++
	c.bad = c.bad || !ok
	c.clear = c.clear || !ok
	c.parts = append(c.parts, fmt.Sprintf("%s %.2f×", label, q))
}

// failed counts a cell whose figure is missing because its run failed.
func (c *check) failed(label string) {
	c.n++
	c.bad, c.clear = true, true
	c.parts = append(c.parts, label+" failed")
}

// pair judges a paired ratio (paired) on its median, which must satisfy
// ok; a cell that both sides ran in without a round where both have a
// figure counts as failed. A median that misses within its noise
// (withinNoise) still misses.
func (c *check) pair(label string, p pairing, ok func(q float64) bool) {
	switch {
	case p.ok():
		c.n++
		miss := !ok(p.med)
		c.bad = c.bad || miss
		c.clear = c.clear || miss && !p.withinNoise(ok)
		c.parts = append(c.parts, p.figure(label))
	case p.failed:
		c.failed(label)
	}
}

func atMost(bound float64) func(float64) bool  { return func(q float64) bool { return q <= bound } }
func atLeast(bound float64) func(float64) bool { return func(q float64) bool { return q >= bound } }

func (c *check) target(name, note string) target {
	t := target{name: name, figure: strings.Join(c.parts, ", ")}
	switch {
	case c.n == 0:
		t.figure = "no cell with both figures"
	case c.bad && !c.clear:
		t.status = notMetNoise
	case c.bad:
		t.status = notMet
	default:
		t.status = met
	}
	if note != "" && c.n > 0 {
		t.figure += " (" + note + ")"
	}
	return t
}

// targets evaluates each of issue 12's targets that a benchmark run can
// show, in the order.
func (a *agg) targets() []target {
	var out []target
	for _, m := range []struct {
		name string
		f    metric
	}{{"Echo: server CPU per message at or below gws's, every size and connection count", cpuPerMsg},
		{"Echo: p99 at or below gws's, every size and connection count", p99}} {
		var c check
		for _, x := range a.cells(Echo) {
			c.pair(fmt.Sprintf("c=%d %s", x.conns, Size(x.payload)), a.paired(side{x, Ours}, side{x, "gws"}, m.f), atMost(1))
		}
		out = append(out, c.target(m.name, "duplex ÷ gws"))
	}

	var pipe check
	for _, x := range a.cells(Pipelined) {
		floor := side{at{Echo, x.conns, x.payload}, Floor} // as oneInFlightFloor
		pipe.pair(fmt.Sprintf("c=%d %s", x.conns, Size(x.payload)), a.paired(side{x, Ours}, floor, msgsPerSec), atLeast(1))
	}
	out = append(out, pipe.target(fmt.Sprintf("Pipelined echo (%d in flight): msgs/s above the TCP floor with one in flight", a.pipelinedDepth()), "duplex pipelined ÷ tcp at 1 in flight"))

	var bc check
	for _, x := range a.cells(Broadcast) {
		if x.payload%1000 != 1 {
			continue
		}
		peer, _ := a.best(x, deliveries, true, peers) // by median, paired with its own rounds
		bc.pair(fmt.Sprintf("to %d, %s, ÷ %s", x.conns, Size(x.payload/1000), peer), a.paired(side{x, Ours}, side{x, peer}, deliveries), atLeast(1))
	}
	out = append(out, bc.target("Broadcast with 1 message in flight: deliveries/s at or above the best peer's", ""))

	var df check
	gwsMode := a.deflateMode("gws")
	ours := ""
	for _, s := range a.duplexSeries(Deflate) {
		if a.deflateMode(s) == gwsMode && ours == "" {
			ours = s
		}
	}
	if ours != "" {
		for _, x := range a.cells(Deflate) {
			df.pair(fmt.Sprintf("c=%d %s", x.conns, Size(x.payload)), a.paired(side{x, ours}, side{x, "gws"}, msgsPerSec), atLeast(1))
		}
	}
	out = append(out, df.target("permessage-deflate echo: msgs/s at or above gws's, mode for mode", fmt.Sprintf("%s ÷ gws, both %s", ours, gwsMode)))

	out = append(out, a.idleTargets(perConn, "")...)
	out = append(out, a.eventsEcho())
	if a.steadyIdle() {
		when := ", steady (after the runtime's periodic collection)"
		if n := a.steadyCollections(); n > 1 {
			when = fmt.Sprintf(", steady (after %d of the runtime's periodic collections)", n)
		}
		out = append(out, a.idleTargets(steadyConn, when)...)
	}
	return out
}

// idleTargets judges the idle targets by f (perConn, or steadyConn), at
// the largest count that every figure needed was measured at; how is added
// to the targets' names.
func (a *agg) idleTargets(f metric, how string) []target {
	acc := Series(Ours, "accept")
	var accFloor, openAcc check
	accNote := "duplex (accept) ÷ tcp"
	if vx, ok := a.largestIdle(acc, f); ok {
		x := at{Idle, vx.conns, vx.payload}
		q := a.stat(vx, acc, f).orNaN() / a.stat(x, Floor, f).orNaN()
		accFloor.add(fmt.Sprintf("c=%d", x.conns), q, q <= acceptOverFloor)
		q = a.stat(x, Ours, f).orNaN() / a.stat(vx, acc, f).orNaN()
		openAcc.add(fmt.Sprintf("c=%d", x.conns), q, q <= openOverAccept)
		// Beside it, for reference only (the target stays judged against
		// the TCP floor): how much of that is net/http's.
		if h := a.stat(vx, HijackFloor, f); h.ok() {
			accNote += fmt.Sprintf("; beside it the %s ÷ tcp %s, duplex (accept) ÷ it %s", hijackFloorHead,
				ratio(h.med, a.stat(x, Floor, f).orNaN()), ratio(a.stat(vx, acc, f).orNaN(), h.med))
		}
	}
	out := []target{
		accFloor.target(fmt.Sprintf("Idle: Accept + goroutine within %.1f× the goroutine-per-connection TCP floor%s", acceptOverFloor, how), accNote),
		openAcc.target(fmt.Sprintf("Idle: Open within %.0f%% of Accept + goroutine%s", 100*(openOverAccept-1), how), "duplex ÷ duplex (accept)"),
	}

	ev := target{name: fmt.Sprintf("Event-loop mode: at most %s per idle connection at %dk connections%s", kib(eventsBytes), eventsConns/1000, how)}
	ex, ok := a.largestIdle(Series(Ours, "events"), f)
	switch {
	case !ok && slices.Contains(a.variants[IdleVariant], Series(Ours, "events")):
		ev.figure = "duplex (events) ran, but has no figure (see Failed runs)"
	case !ok:
		ev.figure = "duplex (events) not in this run (servers/duplex lists no such variant, or -duplex-variants left it out)"
	case ex.conns < eventsConns:
		ev.figure = fmt.Sprintf("largest count in this run: %d", ex.conns)
	default:
		v := a.stat(ex, Series(Ours, "events"), f)
		ev.figure = fmt.Sprintf("%s at c=%d", kib(v.med), ex.conns)
		ev.status = met
		if v.med > eventsBytes {
			ev.status = notMet
		}
	}
	return append(out, ev)
}

// eventsEcho is the event-loop mode's echo throughput against the goroutine
// mode's (Open, the README idiom) in every echo cell the mode ran in; a
// cell where no round has both figures (the mode's runs failed) is not met.
func (a *agg) eventsEcho() target {
	var c check
	events := Series(Ours, "events")
	for _, vx := range a.cells(EchoVariant) {
		x := at{Echo, vx.conns, vx.payload}
		c.pair(fmt.Sprintf("c=%d %s", x.conns, Size(x.payload)), a.paired(side{vx, events}, side{x, Ours}, msgsPerSec), atLeast(eventsEchoShare))
	}
	return c.target(fmt.Sprintf("Event-loop mode: echo msgs/s within %.0f%% of the goroutine mode (Open), every size and connection count", 100*(1-eventsEchoShare)), "duplex (events) ÷ duplex")
}

// largestIdle is the IdleVariant cell with the most connections at which
// series (a Duplex variant) has a figure by f.
func (a *agg) largestIdle(series string, f metric) (at, bool) {
	cs := a.cells(IdleVariant)
	for i := len(cs) - 1; i >= 0; i-- {
		if a.stat(cs[i], series, f).ok() {
			return cs[i], true
		}
	}
	return at{}, false
}

func (a *agg) targetSection(b *strings.Builder) {
	ts := a.targets()
	measured := false
	for _, t := range ts {
		measured = measured || t.status != notMeasured
	}
	if !measured { // a run of other scenarios (hub-broadcast), or without Duplex
		return
	}
	t := grid("target", ts, func(t target) string { return t.name }, []string{"status", "figures"}, func(h string) string { return h },
		func(t target, h string) string {
			if h == "status" {
				return t.status.String()
			}
			return t.figure
		})
	fmt.Fprintf(b, "## Issue 12's targets\n\nEach target judged from this run's figures: Duplex's ratio in each cell the target covers, against a peer or another of its modes on the median of the ratios taken within each round (paired, see Method), against memory bounds on the medians (idle at the largest count measured for the mode). A short run lacks some cells.\n\n%s\n", t)
}
