package report

import (
	"fmt"
	"math"
	"strings"
)

// versus is one row of the summary: a Duplex series in one cell against
// the best peer and the floor.
type versus struct {
	label, metric string
	d             stat
	peer          string  // the best peer, "" if none
	pv            float64 // its median
	floor         float64 // the floor's median, NaN if none
	higher        bool
	format        func(float64) string
	duplex        side   // where d comes from
	f             metric // d's metric
	memory        bool   // compared on the medians, not paired: memory does not drift between rounds
}

// against builds a summary row: series in cell dx, against the best peer
// (among those among lets count) and the floor (nil: none) in cell x.
func (a *agg) against(label, name string, dx, x at, series string, f metric, higher bool, among func(string) bool, floor func(at) stat, format func(float64) string) versus {
	peer, pv := a.best(x, f, higher, among)
	v := versus{label: label, metric: name, d: a.stat(dx, series, f), peer: peer, pv: pv, floor: math.NaN(), higher: higher, format: format,
		duplex: side{dx, series}, f: f}
	if floor != nil {
		v.floor = floor(x).orNaN()
	}
	return v
}

// duplexSeries are Duplex's series in a scenario: its README idiom, then
// its variants.
func (a *agg) duplexSeries(scenario string) []string {
	out := []string{Ours}
	for _, v := range a.variants[scenario] {
		if strings.HasPrefix(v, Ours+" (") {
			out = append(out, v)
		}
	}
	return out
}

// versusAll lists every summary row: every cell of every scenario, Duplex
// against the best peer and the floor.
func (a *agg) versusAll() []versus {
	var out []versus
	add := func(v versus) { out = append(out, v) }
	memory := func(v versus) versus { v.memory = true; return v }
	for _, x := range a.cells(Echo) {
		l := fmt.Sprintf("echo c=%d %s", x.conns, Size(x.payload))
		add(a.against(l, "msgs/s", x, x, Ours, msgsPerSec, true, peers, a.sameCellFloor(msgsPerSec), num))
		add(a.against(l, "CPU µs/msg", x, x, Ours, cpuPerMsg, false, peers, a.sameCellFloor(cpuPerMsg), fixed2))
		add(a.against(l, "p99", x, x, Ours, p99, false, peers, a.sameCellFloor(p99), us))
	}
	for _, x := range a.cells(Pipelined) {
		l := fmt.Sprintf("pipelined c=%d %s, %d in flight", x.conns, Size(x.payload), a.pipelinedDepth())
		add(a.against(l, "msgs/s (floor: 1 in flight)", x, x, Ours, msgsPerSec, true, peers, a.oneInFlightFloor(msgsPerSec), num))
		add(a.against(l, "CPU µs/msg (floor: 1 in flight)", x, x, Ours, cpuPerMsg, false, peers, a.oneInFlightFloor(cpuPerMsg), fixed2))
		add(a.against(l, "p99 (floor: 1 in flight)", x, x, Ours, p99, false, peers, a.oneInFlightFloor(p99), us))
	}
	for _, x := range a.cells(Idle) {
		add(memory(a.against(fmt.Sprintf("idle c=%d", x.conns), "bytes/conn", x, x, Ours, perConn, false, peers, a.sameCellFloor(perConn), kib)))
	}
	for _, v := range a.duplexSeries(IdleVariant)[1:] { // not the hijack floor
		for _, vx := range a.cells(IdleVariant) {
			x := at{Idle, vx.conns, vx.payload}
			add(memory(a.against(fmt.Sprintf("idle c=%d, %s", x.conns, v), "bytes/conn", vx, x, v, perConn, false, peers, a.sameCellFloor(perConn), kib)))
		}
	}
	for _, x := range a.cells(Broadcast) {
		l := fmt.Sprintf("broadcast to %d, %s", x.conns, Size(x.payload/1000))
		add(a.against(l, fmt.Sprintf("deliveries/s, W=%d", x.payload%1000), x, x, Ours, deliveries, true, peers, a.sameCellFloor(deliveries), num))
		add(a.against(l, fmt.Sprintf("lag p99, W=%d", x.payload%1000), x, x, Ours, p99, false, peers, a.sameCellFloor(p99), us))
	}
	for _, x := range a.cells(Deflate) {
		for _, s := range a.duplexSeries(Deflate) {
			l := fmt.Sprintf("deflate c=%d %s, %s, %s", x.conns, Size(x.payload), s, a.deflateMode(s))
			add(a.against(l, "msgs/s (peers in its mode)", x, x, s, msgsPerSec, true, a.sameMode(s), nil, num))
		}
	}
	for _, x := range a.cells(DeflateIdle) {
		for _, s := range a.duplexSeries(DeflateIdle) {
			l := fmt.Sprintf("deflate-idle c=%d, %s, %s", x.conns, s, a.deflateMode(s))
			add(memory(a.against(l, "bytes/conn (peers in its mode)", x, x, s, perConn, false, a.sameMode(s), nil, kib)))
		}
	}
	return out
}

// toPeer is Duplex's ratio to the best peer in a row, paired within rounds
// (paired.go) but for memory, and its cell: the paired ratio with the
// medians' beside it when more than one round paired. Without a round
// that both have a figure in, it is the medians' ratio.
func (a *agg) toPeer(v versus) (float64, string) {
	q := v.d.med / v.pv
	if v.memory {
		return q, ratio(v.d.med, v.pv)
	}
	p := a.paired(v.duplex, side{v.duplex.x, v.peer}, v.f)
	switch {
	case p.n > 1:
		return p.med, fmt.Sprintf("%.2f× (medians' %.2f×)", p.med, q)
	case p.ok():
		return p.med, fmt.Sprintf("%.2f×", p.med)
	}
	return q, ratio(v.d.med, v.pv)
}

// summary is Duplex against the best other library and the floor, cell by cell.
func (a *agg) summary(b *strings.Builder) {
	has := false
	for _, l := range a.libs {
		has = has || l == Ours
	}
	rows := a.versusAll()
	if !has || len(rows) == 0 { // no Duplex, or a run of other scenarios (hub-broadcast)
		return
	}
	var behind, ahead []string
	heads := []string{"metric", "duplex", "best peer", "duplex / best peer", "duplex / tcp floor"}
	t := grid("scenario", rows, func(v versus) string { return v.label }, heads, func(h string) string { return h },
		func(v versus, h string) string {
			switch {
			case h == "metric":
				return v.metric
			case h == "duplex":
				return cell(v.d, v.format, false)
			case h == "best peer" && v.peer == "" && v.d.ok():
				return "–"
			case h == "best peer" && v.peer == "":
				return ""
			case h == "best peer" && v.d.ok():
				return fmt.Sprintf("%s %s", v.peer, v.format(v.pv))
			case h == "best peer":
				return v.peer
			case !v.d.ok():
				return ""
			case h == "duplex / best peer" && v.peer == "":
				return "–"
			case h == "duplex / best peer":
				_, s := a.toPeer(v)
				return s
			}
			return ratio(v.d.med, v.floor)
		})
	for _, v := range rows {
		if !v.d.ok() || v.peer == "" || v.pv <= 0 {
			continue
		}
		q, _ := a.toPeer(v)
		item := fmt.Sprintf("%s, %s: %.2f× %s", v.label, v.metric, q, v.peer)
		switch {
		case v.higher && q < 0.9 || !v.higher && q > 1.1:
			behind = append(behind, item)
		case v.higher && q > 1.1 || !v.higher && q < 0.9:
			ahead = append(ahead, item)
		}
	}
	fmt.Fprintf(b, "## Duplex against the field\n\nFor msgs/s and deliveries/s a ratio below 1 means Duplex is behind; for CPU, latency and memory a ratio above 1 means Duplex is behind. Against the best peer (best by median) the ratio is paired, the median of the ratios within each round (see Method), with the ratio of the medians in brackets, but for memory (medians only); against the TCP floor it is the medians'. Pipelined rows compare with the TCP floor at one message in flight; deflate rows with the best peer in the same compression mode (no floor: it does not compress).\n\n%s\n", t)
	if len(behind) > 0 {
		fmt.Fprintf(b, "Behind the best peer by more than 10%%:\n\n- %s\n\n", strings.Join(behind, "\n- "))
	}
	if len(ahead) > 0 {
		fmt.Fprintf(b, "Ahead of the best peer by more than 10%%:\n\n- %s\n\n", strings.Join(ahead, "\n- "))
	}
}
