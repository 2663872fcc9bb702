package report

import "fmt"

// Duplex against a peer, round by round.
//
// The machine drifts between rounds far more than the libraries differ:
// whole rounds run slow or fast for every server at once (in the 3-round
// report of issue 12 the TCP floor's echo at c=1000 64 B took 16.77, 18.21
// and 13.31 µs of server CPU per message). A ratio taken within a round
// cancels that drift; a ratio of medians over the rounds does not, since
// one series' median may come from a slow round and the other's from a
// fast one. The targets that compare throughput, CPU or latency are judged
// on the median of the per-round ratios.

// side is one series in one cell: a ratio's numerator or denominator.
type side struct {
	x      at
	series string
}

// pairing is one side's figure over another's, round by round.
type pairing struct {
	stat            // of the per-round ratios, over the rounds where both sides have a figure
	medians float64 // the ratio of the two sides' medians, NaN if either has none
	// failed: both sides ran, but no round has a figure from both.
	failed bool
}

// paired pairs num's figure by f with den's in the same round.
func (a *agg) paired(num, den side, f metric) pairing {
	d := a.rounds(den, f)
	var qs []float64
	for round, v := range a.rounds(num, f) {
		if w, ok := d[round]; ok && w != 0 {
			qs = append(qs, v/w)
		}
	}
	ns, ds := a.stat(num.x, num.series, f), a.stat(den.x, den.series, f)
	p := pairing{medians: ns.orNaN() / ds.orNaN()}
	p.summarize(qs)
	p.failed = !p.ok() && ran(ns) && ran(ds)
	return p
}

// rounds is a side's figure by f in each round it has one.
func (a *agg) rounds(s side, f metric) map[int]float64 {
	out := map[int]float64{}
	for _, r := range a.recs[cellKey{s.x, s.series}] {
		if measured(r, f) {
			out[r.Round] = f(r)
		}
	}
	return out
}

// ran says whether a series ran in a cell it supports: it has a figure,
// or its runs failed.
func ran(s stat) bool { return s.ok() || s.err != "" }

// figure renders the pairing after label: "c=100 64 B 1.08× (paired;
// 0.91–1.19 over 8 rounds; medians' ratio 1.07×)".
func (p pairing) figure(label string) string {
	if p.n == 1 {
		return fmt.Sprintf("%s %.2f× (1 round)", label, p.med)
	}
	return fmt.Sprintf("%s %.2f× (paired; %.2f–%.2f over %d rounds; medians' ratio %.2f×)", label, p.med, p.min, p.max, p.n, p.medians)
}
