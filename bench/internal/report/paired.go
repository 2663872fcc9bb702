package report

import (
	"fmt"
	"math"
)

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
	// lo and hi bound the median of the per-round ratios with confidence
	// conf (medianInterval): a bound between them is one the rounds cannot
	// tell the median from.
	lo, hi, conf float64
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
	p.summarize(qs) // sorts qs
	if len(qs) > 0 {
		p.lo, p.hi, p.conf = medianInterval(qs)
	}
	p.failed = !p.ok() && ran(ns) && ran(ds)
	return p
}

// minConfidence is the confidence medianInterval aims for.
const minConfidence = 0.9

// medianInterval is the distribution-free confidence interval of the median
// of sorted (at least one value): the k-th smallest and the k-th largest
// value, k the largest for which the chance that fewer than k values fall
// below the true median, doubled, leaves at least minConfidence; it assumes
// only that the rounds are independent. With 5 rounds it is their min–max
// (94%), with 8 the 2nd–7th (93%), with 10 the 2nd–9th (98%); under 5 rounds
// even min–max falls short of minConfidence (4: 88%), and conf says so.
func medianInterval(sorted []float64) (lo, hi, conf float64) {
	n := len(sorted)
	// tail is P(X < k) for X ~ Binomial(n, 1/2), grown one k at a time.
	k, tail, term := 1, math.Pow(0.5, float64(n)), math.Pow(0.5, float64(n))
	for k < (n+1)/2 {
		term *= float64(n-k+1) / float64(k) // P(X = k)
		if 1-2*(tail+term) < minConfidence {
			break
		}
		tail += term
		k++
	}
	return sorted[k-1], sorted[n-k], 1 - 2*tail
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
	interval := ""
	if p.lo != p.min || p.hi != p.max {
		interval = fmt.Sprintf(", %.0f%% interval of the median %.2f–%.2f", 100*p.conf, p.lo, p.hi)
	}
	return fmt.Sprintf("%s %.2f× (paired; %.2f–%.2f over %d rounds%s; medians' ratio %.2f×)", label, p.med, p.min, p.max, p.n, interval, p.medians)
}

// withinNoise says whether a median that misses ok could still be the
// rounds' noise: the median's confidence interval reaches ok's side.
func (p pairing) withinNoise(ok func(q float64) bool) bool {
	return p.ok() && p.n > 1 && (ok(p.lo) || ok(p.hi))
}
