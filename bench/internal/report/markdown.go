package report

import (
	"fmt"
	"strings"
	"time"
)

// markdown is REPORT.md: the run, Duplex against the field and the issue's
// targets, then a section per scenario.
func (a *agg) markdown(plots map[string]string) string {
	res := a.res
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	s := res.Settings
	w("# Duplex benchmark report\n\n")
	kind := "full"
	if s.Short {
		kind = "short"
	}
	w("A %s run of `%s`, %s, %s long.\n\n", kind, s.Command, res.Started.UTC().Format("2006-01-02 15:04 MST"),
		res.Finished.Sub(res.Started).Round(time.Second))
	w("**Machine:** %d cores, %s, %s RAM, Linux %s, %s, open-file limit %d per process. Load average %s at the start, %s at the end (the machine is shared).\n\n",
		m.Cores, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.FDLimit, m.LoadStart, m.LoadEnd)
	w("**Method:** each server runs alone pinned to CPU %s with GOMAXPROCS=1; the load generator (one goroutine on a raw epoll set, frames built once, masked) runs pinned to CPU %s with GOMAXPROCS=1. ", s.ServerCPU, s.LoadCPU)
	rounds := fmt.Sprintf("%d round(s)", s.Rounds)
	if s.IdleRounds != 0 && s.IdleRounds != s.Rounds {
		rounds += fmt.Sprintf(" (idle and deflate-idle: the first %d)", s.IdleRounds)
	}
	order := "the libraries' order rotated each round"
	if s.ShuffledOrder {
		order = "the libraries' order shuffled for each cell (seeded by the round, so a plan repeats)"
	}
	w("Every cell is a fresh server process; %s, %s; each echo or broadcast run has a %v warm-up and a %v measured window. ", rounds, order, s.Warmup, s.Duration)
	w("Figures are medians over the rounds with (min–max). Server CPU time comes from /proc/<pid>/stat (utime+stime) over the measured window. ")
	w("Whole rounds run slow or fast for every server at once, and this drift is larger than the libraries' differences (on the 2-core machine of issue 12 the TCP floor's echo at c=1000 64 B took 16.77, 18.21 and 13.31 µs of server CPU per message in three rounds), so a ratio of two medians may compare one server's slow round with another's fast one. ")
	w("The targets that compare Duplex with a peer or with another of its modes are therefore judged **paired**: the ratio is taken within each round (a round where either side failed is left out) and the target judged on the median of those ratios, shown with their min–max and the ratio of the medians beside it; the memory targets, which do not drift that way, are judged on the medians. ")
	var wins []string
	for _, x := range s.Windows {
		wins = append(wins, fmt.Sprint(x))
	}
	w("Echo keeps %d message(s) in flight per connection; broadcast keeps %s message(s) in flight (one table each).\n\n", s.Depth, strings.Join(wins, " or "))

	t := grid("library", res.Libs, func(l Lib) string { return l.Name },
		[]string{"module", "version", "permessage-deflate"}, func(h string) string { return h },
		func(l Lib, h string) string {
			switch h {
			case "module":
				return l.Module
			case "version":
				if !l.Built {
					return l.Version + " (build failed)"
				}
				return l.Version
			}
			if !l.Compression {
				return "n/a"
			}
			return "yes"
		})
	w("%s\n", t)
	w("Ratios read `A× · B×`: A against the best WebSocket library in that cell, B against the TCP floor. For msgs/s higher is better; for CPU, latency and memory lower is better (a ratio above 1 is worse).\n\n")

	a.summary(&b)
	a.targetSection(&b)
	a.echo(&b, plots)
	a.pipelined(&b, plots)
	a.idle(&b, plots)
	a.broadcast(&b, plots)
	a.hubBroadcast(&b, plots)
	a.deflate(&b, plots)
	a.micro(&b)

	if errs := a.errors(); len(errs) > 0 {
		w("## Failed runs\n\n")
		for _, e := range errs {
			w("- %s\n", e)
		}
		w("\n")
	}
	return b.String()
}

func (a *agg) errors() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range a.res.Records {
		if r.Err == "" {
			continue
		}
		e := r.Err
		if len(e) > 300 {
			e = e[:300] + "…"
		}
		s := fmt.Sprintf("%s %s (c=%d, %s, round %d): %s", r.Scenario, Series(r.Lib, r.Variant), r.Conns, Size(r.Payload), r.Round, e)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// echoTables are the tables of an echo-type scenario at one connection
// count; floor is the reference of the ratios' B.
func (a *agg) echoTables(b *strings.Builder, scenario string, conns int, floor func(metric) func(at) stat, floorSelf bool) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	cells, cols := a.cellsWith(scenario, conns), a.columns(scenario, false)
	table := func(render func(at, column) string) *table {
		return grid("payload", cells, payloadHead, cols, columnHead, render)
	}
	w("Messages echoed per second:\n\n%s\n", table(a.values(msgsPerSec, num)))
	w("Ratios of msgs/s:\n\n%s\n", table(a.ratio(ratios{f: msgsPerSec, higher: true, floor: floor(msgsPerSec), floorSelf: floorSelf})))
	w("Server CPU time per message (µs):\n\n%s\n", table(a.values(cpuPerMsg, fixed2)))
	w("Ratios of CPU per message:\n\n%s\n", table(a.ratio(ratios{f: cpuPerMsg, floor: floor(cpuPerMsg), floorSelf: floorSelf})))
	w("Round-trip latency p50 / p99 / p99.9:\n\n%s\n", table(a.several(func(v ...float64) string {
		return fmt.Sprintf("%s / %s / %s", us(v[0]), us(v[1]), us(v[2]))
	}, p50, p99, p999)))
	w("Server system calls per message, reads / writes (from /proc/<pid>/io; epoll_wait not counted):\n\n%s\n", table(a.several(func(v ...float64) string {
		return fmt.Sprintf("%.2f / %.2f", v[0], v[1])
	}, reads, writes)))
	w("How busy each side's core was, server / load generator (CPU seconds per second; a server well under 100%% was waiting, not working):\n\n%s\n", table(a.several(func(v ...float64) string {
		return fmt.Sprintf("%s / %s", percent(v[0]), percent(v[1]))
	}, serverBusy, loadBusy)))
}

func (a *agg) echo(b *strings.Builder, plots map[string]string) {
	cs := a.conns(Echo)
	if len(cs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 1. Echo: throughput, latency, server CPU per message\n\n")
	for _, c := range cs {
		w("### %d connections\n\n", c)
		a.echoTables(b, Echo, c, a.sameCellFloor, true)
		a.echoModes(b, Echo, c)
		for _, k := range []string{fmt.Sprintf("echo-c%d", c), fmt.Sprintf("cpu-c%d", c)} {
			if p, ok := plots[k]; ok {
				w("![%s](%s)\n\n", k, p)
			}
		}
	}
	w("The load generator used up to %.0f%% of its core and the servers up to %.0f%% of theirs: where the generator is near 100%% it, not the server, set the pace, and CPU per message is the fairer comparison.\n\n",
		100*a.maxOf(Echo, loadBusy), 100*a.maxOf(Echo, serverBusy))
}

// pipelinedDepth is the pipelined scenario's messages in flight per
// connection, as the settings or the records say.
func (a *agg) pipelinedDepth() int {
	d := a.res.Settings.PipelinedDepth
	for _, r := range a.res.Records {
		if d == 0 && r.Scenario == Pipelined {
			d = r.Depth
		}
	}
	return d
}

// oneInFlightFloor is the reference of the pipelined scenario: the TCP
// floor's echo with one message in flight, same connections and payload.
func (a *agg) oneInFlightFloor(f metric) func(at) stat {
	return func(x at) stat { return a.stat(at{Echo, x.conns, x.payload}, Floor, f) }
}

func (a *agg) pipelined(b *strings.Builder, plots map[string]string) {
	cs := a.conns(Pipelined)
	if len(cs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	depth := a.pipelinedDepth()
	w("## 1b. Pipelined echo: %d messages in flight per connection\n\n", depth)
	w("Like echo, but every connection keeps %d messages in flight: the load generator writes them back to back and sends one more per echo, so a server that reads several messages per read call and flushes once per batch can answer several with one write. ", depth)
	w("Here B in `A× · B×` is against the TCP floor with **one** message in flight (the echo section's tcp column, same connections and payload), the floor Duplex has to pass by batching; the tcp floor column shows the floor pipelined against itself at one in flight.\n\n")
	for _, c := range cs {
		w("### %d connections\n\n", c)
		a.echoTables(b, Pipelined, c, a.oneInFlightFloor, false)
		a.echoModes(b, Pipelined, c)
		var parts []string
		for _, x := range a.cellsWith(Pipelined, c) {
			d := a.stat(x, Ours, msgsPerSec)
			if !d.ok() {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s: %s the msgs/s, %s the server CPU per message", Size(x.payload),
				ratio(d.med, a.oneInFlightFloor(msgsPerSec)(x).orNaN()), ratio(a.stat(x, Ours, cpuPerMsg).orNaN(), a.oneInFlightFloor(cpuPerMsg)(x).orNaN())))
		}
		if len(parts) > 0 {
			w("**Duplex pipelined (%d in flight) against the TCP floor with one in flight:** %s.\n\n", depth, strings.Join(parts, "; "))
		}
		if p, ok := plots[fmt.Sprintf("pipelined-c%d", c)]; ok {
			w("![pipelined-c%d](%s)\n\n", c, p)
		}
	}
}

func (a *agg) broadcast(b *strings.Builder, plots map[string]string) {
	cs := a.cells(Broadcast)
	if len(cs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 3. Broadcast fan-out to one room\n\n")
	w("Every connection is a subscriber of the one room (the publisher too). The publisher keeps W messages in flight; a message retires when every subscriber has it; lag is publish to delivery. Libraries with a broadcast helper use it (gws Broadcaster, gorilla PreparedMessage, gobwas a compiled frame); the others write per subscriber: nbio directly (its writes never block); coder, gorilla and gobwas through a channel per subscriber drained by a writer goroutine; duplex from the publisher's goroutine: it queues each message (framed once) in every subscriber nothing else is writing to and flushes them one by one, and when a further message has arrived meanwhile it reads and queues that one first, so with W > 1 a subscriber gets several messages per system call; a subscriber being written to queues the message for its own writer goroutine, which sends all it finds queued and flushes once. The others write each message on its own.\n\n")
	metrics := []string{"deliveries/s", "ratio · floor", "lag p50", "lag p99", "lag p99.9", "server CPU µs/delivery", "write syscalls/delivery", "lost"}
	for _, x := range cs {
		w("### %d subscribers, %s messages, W = %d\n\n", x.conns, Size(x.payload/1000), x.payload%1000)
		rr := a.ratio(ratios{f: deliveries, higher: true, floor: a.sameCellFloor(deliveries), floorSelf: true})
		t := grid("library", a.columns(Broadcast, false), func(c column) string { return c.series }, metrics, func(h string) string { return h },
			func(c column, h string) string {
				if v, ok := a.deliveryCell(x, c.series, h, h == metrics[0]); ok {
					return v
				}
				if h == "ratio · floor" {
					return rr(x, c)
				}
				return fixed2(a.stat(x, c.series, cpuPerMsg).med) // server CPU µs/delivery
			})
		w("%s\n", t)
	}
	for _, x := range cs {
		if p, ok := plots[fmt.Sprintf("broadcast-w%d", x.payload%1000)]; ok {
			w("![broadcast W=%d](%s)\n\n", x.payload%1000, p)
		}
	}
}

// lost adds up the connections or deliveries a series lost in a cell.
func (a *agg) lost(x at, series string) int64 {
	var n int64
	for _, r := range a.recs[cellKey{x, series}] {
		n += r.Lost
	}
	return n
}

// deliveryCell is a broadcast table's cell (library or hub) for the
// columns both tables have, and false for any other. A series without a
// deliveries figure shows why in its first column (first) and nothing in
// the others.
func (a *agg) deliveryCell(x at, series, h string, first bool) (string, bool) {
	st := a.stat(x, series, deliveries)
	if !st.ok() {
		if first {
			return cell(st, num, false), true
		}
		return "", true
	}
	med := func(f metric) float64 { return a.stat(x, series, f).med }
	switch h {
	case "deliveries/s":
		return cell(st, num, true), true
	case "lag p50":
		return us(med(p50)), true
	case "lag p99":
		return us(med(p99)), true
	case "lag p99.9":
		return us(med(p999)), true
	case "write syscalls/delivery":
		return fixed2(med(writes)), true
	case "lost":
		return fmt.Sprint(a.lost(x, series)), true
	}
	return "", false
}
