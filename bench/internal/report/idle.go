package report

import (
	"fmt"
	"slices"
	"strings"
)

// HijackVariant is servers/tcp's -variant of the net/http hijack floor, run
// in the idle scenario beside Duplex's modes (its records: IdleVariant,
// Lib Floor).
const HijackVariant = "hijack"

// HijackFloor is the hijack floor's series, Series(Floor, HijackVariant):
// a reference, like the floor, neither a library nor one of Duplex's modes.
const HijackFloor = Floor + " (" + HijackVariant + ")"

// hijackFloorHead heads its column, and describes it in the idle section.
const (
	hijackFloorHead = "net/http hijack floor"
	hijackFloorDesc = "no WebSocket library: servers/tcp -variant hijack serves the handshake through net/http, hijacks the connection, writes the 101 answer, drops the hijacked bufio reader and writer and parks a goroutine per connection in a 1-byte Read. It is the least a server that upgrades through net/http holds: the TCP floor's goroutine, plus net/http's garbage of each handshake (its reader and writer of the hijacked connection, the request, its headers) as long as the collector's pacing (GOGC=100) leaves it resident. What it holds over the TCP floor is net/http's share of a mode's cost; what a mode holds over it, the library's"
)

// modeOf describes Duplex's server variants in the idle scenario; a variant
// not listed is shown by its name.
var modeOf = map[string]string{
	Ours:                      "Open (the README idiom): the handler runs inside net/http's goroutine, which keeps that goroutine and its buffers (bufio reader and writer, the request, its contexts) for the connection's life",
	Series(Ours, "accept"):    "Accept followed by `go serve(c)`: net/http's goroutine and buffers go when the HTTP handler returns",
	Series(Ours, "events"):    "the event-loop mode: a connection waiting for its next message holds no goroutine and no buffer",
	Series(Ours, "nocontext"): "permessage-deflate without context takeover",
}

func (a *agg) idle(b *strings.Builder, plots map[string]string) {
	cs := a.cells(Idle)
	if len(cs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 2. Memory per idle connection\n\n")
	w("RSS growth of the server divided by the connections, after the RSS settled (no message sent). Connections come from %d source addresses 127.0.0.x.\n\n", (cs[len(cs)-1].conns+999)/1000)
	cols := a.columns(Idle, false)
	t := grid("connections", cs, connsHead, cols, columnHead, a.values(perConn, kib))
	r := grid("connections", cs, connsHead, cols, columnHead, a.ratio(ratios{f: perConn, floor: a.sameCellFloor(perConn), floorSelf: true}))
	w("%s\nRatios:\n\n%s\n", t, r)
	if last := cs[len(cs)-1]; len(cs) > 1 {
		prev := cs[len(cs)-2]
		w("Projected to 100,000 connections at the per-connection cost measured at %d:", last.conns)
		var moves []string
		for _, l := range a.libs {
			st := a.stat(last, l, perConn)
			if !st.ok() {
				continue
			}
			w(" %s %.0f MiB;", l, st.med*100000/(1<<20))
			if p := a.stat(prev, l, perConn); p.ok() && p.med > 0 {
				moves = append(moves, fmt.Sprintf("%s %+.0f%%", l, 100*(st.med/p.med-1)))
			}
		}
		w(" a real 100k run does not fit under this machine's open-file limit. From %d to %d connections the cost per connection moved by: %s; a curve that is flat or falling there carries to 100k+, as the fixed costs spread further.\n\n",
			prev.conns, last.conns, strings.Join(moves, ", "))
	}
	if p, ok := plots["idle"]; ok {
		w("![idle memory](%s)\n\n", p)
	}
	a.idleModes(b, perConn, false)
	if !a.steadyIdle() {
		return // a run from before the steady figure
	}
	// Runs from before the count ran one collection; since, two.
	heading, after, why := "collection", "one garbage collection (the one Go's runtime runs by itself once a server has been idle for two minutes, sent to every server alike through its stdin) and the RSS settling again",
		"After one collection the scavenger still keeps part of it (runs since then measure after two)."
	if n := a.steadyCollections(); n > 1 {
		heading = "collections"
		after = fmt.Sprintf("%d garbage collections (those Go's runtime runs by itself, one every two idle minutes, sent to every server alike through its stdin), the RSS settling after each", n)
		why = "One collection is not enough to let it go: the scavenger keeps 1.1 times the heap in use at the last collection's mark termination, which comes before the sweep, so after the first it still counts the spans that garbage filled; the second collection's figure is what an idle server keeps for good."
	}
	w("### Steady: after the runtime's periodic %s\n\n", heading)
	w("The same servers at the largest count, measured again after %s. The figures above include the room the collector's pacing (GOGC=100) leaves the heap to fill with the handshakes' garbage (net/http's 4 KiB reader and writer of each hijacked connection, the request, its headers): a server whose connections arrived at once holds about twice its live heap. %s\n\n", after, why)
	last := cs[len(cs)-1:] // measured steady at the largest count only
	t = grid("connections", last, connsHead, cols, columnHead, a.values(steadyConn, kib))
	r = grid("connections", last, connsHead, cols, columnHead, a.ratio(ratios{f: steadyConn, floor: a.sameCellFloor(steadyConn), floorSelf: true}))
	w("%s\nRatios:\n\n%s\n", t, r)
	a.idleModes(b, steadyConn, true)
}

// idleModes compares Duplex's modes: Open (the main tables) and each server
// variant that ran in IdleVariant (Accept + go, the event loop), with the
// floor and the best peer beside them, by f (perConn, or steadyConn when
// steady).
//
// The net/http hijack floor, when it ran, stands beside the TCP floor, and
// each mode's ratio to it joins the ratios; it is no mode of Duplex's and
// no peer.
func (a *agg) idleModes(b *strings.Builder, f metric, steady bool) {
	variants := a.duplexSeries(IdleVariant)[1:]
	hijack := a.hijackFloorRan()
	if len(variants) == 0 && !hijack || !slices.Contains(a.libs, Ours) {
		return
	}
	cols := []column{{Ours, "duplex, Open (above)"}}
	for _, v := range variants {
		cols = append(cols, column{v, v})
	}
	modes := len(cols)
	cols = append(cols, column{Floor, "tcp floor"})
	if hijack {
		cols = append(cols, column{HijackFloor, hijackFloorHead})
	}
	// The variants' records are under IdleVariant, the rest under Idle.
	rowsAt := func(x at, series string) at {
		if series != Ours && series != Floor {
			x.scenario = IdleVariant
		}
		return x
	}
	var rows []at
	for _, x := range a.cells(IdleVariant) {
		rows = append(rows, at{Idle, x.conns, x.payload})
	}
	if steady && len(rows) > 0 {
		rows = rows[len(rows)-1:] // measured steady at the largest count only
	}
	values := a.values(f, kib)
	t := grid("connections", rows, connsHead, cols, columnHead, func(x at, c column) string { return values(rowsAt(x, c.series), c) })
	cmp := slices.Clone(cols[:modes])
	if hijack {
		cmp = append(cmp, cols[len(cols)-1])
	}
	r := grid("connections", rows, connsHead, cmp, columnHead, func(x at, c column) string {
		s := a.stat(rowsAt(x, c.series), c.series, f)
		floor := a.stat(x, Floor, f).orNaN()
		switch {
		case !s.ok():
			return cell(s, kib, false)
		case c.series == HijackFloor:
			return ratio(s.med, floor)
		}
		_, best := a.best(x, f, false, peers)
		out := ratio(s.med, best) + " · " + ratio(s.med, floor)
		if hijack {
			out += " · " + ratio(s.med, a.stat(rowsAt(x, HijackFloor), HijackFloor, f).orNaN())
		}
		if c.series != Ours {
			out += " · " + ratio(a.stat(x, Ours, f).orNaN(), s.med)
		}
		return out
	})
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	if steady {
		w("#### Duplex's modes, steady\n\n")
	} else {
		w("### Duplex's modes\n\nThe same echo server, served each way:\n\n")
		for _, c := range cols[:modes] {
			d := modeOf[c.series]
			if d == "" {
				d = "servers/duplex -variant " + strings.TrimSuffix(strings.TrimPrefix(c.series, Ours+" ("), ")")
			}
			w("- **%s**: %s.\n", c.head, d)
		}
		if hijack {
			w("\nBeside the TCP floor, the **%s**: %s.\n", hijackFloorHead, hijackFloorDesc)
		}
	}
	if hijack {
		w("\n%s\nRatios `A× · B× · H× · C×`: A against the best peer, B against the TCP floor (goroutine per connection), H against the net/http hijack floor, C: Open against this mode; in the %s's column, its ratio to the TCP floor.\n\n%s\n", t, hijackFloorHead, r)
		return
	}
	w("\n%s\nRatios `A× · B× · C×`: A against the best peer, B against the TCP floor (goroutine per connection), C: Open against this mode.\n\n%s\n", t, r)
}

// hijackFloorRan reports whether the net/http hijack floor ran in the idle
// scenario.
func (a *agg) hijackFloorRan() bool {
	return slices.Contains(a.variants[IdleVariant], HijackFloor)
}

// steadyCollections is how many collections came before the steady
// figures (the fewest in any record; 1 for runs from before it was
// recorded).
func (a *agg) steadyCollections() int {
	n := 0
	for k, rs := range a.recs {
		if k.at.scenario == Idle || k.at.scenario == IdleVariant {
			for _, r := range rs {
				if r.SteadyBytesPerConn > 0 && (n == 0 || max(r.SteadyCollections, 1) < n) {
					n = max(r.SteadyCollections, 1)
				}
			}
		}
	}
	return n
}

// steadyIdle reports whether the run measured idle memory steady too
// (SteadyBytesPerConn; runs before it have none).
func (a *agg) steadyIdle() bool {
	for k, rs := range a.recs {
		if k.at.scenario == Idle || k.at.scenario == IdleVariant {
			for _, r := range rs {
				if r.SteadyBytesPerConn > 0 {
					return true
				}
			}
		}
	}
	return false
}
