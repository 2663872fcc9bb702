package report

import (
	"math"
	"strings"
	"testing"
)

// fixture builds results of one round from compact records; every library
// it names is built, gorilla without compression.
func fixture(recs ...Record) *Results {
	res := &Results{Settings: Settings{PipelinedDepth: 16}}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Round == 0 {
			r.Round = 1
		}
		res.Records = append(res.Records, r)
		if !seen[r.Lib] {
			seen[r.Lib] = true
			res.Libs = append(res.Libs, Lib{Name: r.Lib, Built: true, Compression: r.Lib != "gorilla" && r.Lib != Floor})
		}
	}
	return res
}

// onTarget is a run that meets every target but where noted by the
// tests that change one figure: Duplex at or under gws in echo, pipelined
// over the one-in-flight floor, ahead in broadcast at W=1, ahead of gws
// without context takeover, and idle within every bound.
func onTarget() []Record {
	noCtx := "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	var recs []Record
	for _, p := range []int{64, 16 << 10} {
		recs = append(recs,
			Record{Scenario: Echo, Lib: Ours, Conns: 100, Payload: p, MsgsPerSec: 100e3, CPUPerMsg: 4, P99: 900},
			Record{Scenario: Echo, Lib: "gws", Conns: 100, Payload: p, MsgsPerSec: 90e3, CPUPerMsg: 5, P99: 1000},
			Record{Scenario: Echo, Lib: Floor, Conns: 100, Payload: p, MsgsPerSec: 120e3, CPUPerMsg: 3, P99: 800},
			Record{Scenario: EchoVariant, Lib: Ours, Variant: "events", Conns: 100, Payload: p, MsgsPerSec: 95e3, CPUPerMsg: 4.2, P99: 950})
	}
	recs = append(recs,
		Record{Scenario: Pipelined, Lib: Ours, Conns: 100, Payload: 64, Depth: 16, MsgsPerSec: 150e3, CPUPerMsg: 2, P99: 2000},
		Record{Scenario: Pipelined, Lib: "gws", Conns: 100, Payload: 64, Depth: 16, MsgsPerSec: 140e3, CPUPerMsg: 2.5, P99: 2500},
		Record{Scenario: Pipelined, Lib: Floor, Conns: 100, Payload: 64, Depth: 16, MsgsPerSec: 300e3, CPUPerMsg: 1, P99: 1000},
		Record{Scenario: Broadcast, Lib: Ours, Conns: 1000, Payload: 64, Window: 1, DeliveriesPerSec: 2e6},
		Record{Scenario: Broadcast, Lib: "gws", Conns: 1000, Payload: 64, Window: 1, DeliveriesPerSec: 1.5e6},
		Record{Scenario: Broadcast, Lib: Ours, Conns: 1000, Payload: 64, Window: 4, DeliveriesPerSec: 1e6}, // W=4 is no target
		Record{Scenario: Broadcast, Lib: "gws", Conns: 1000, Payload: 64, Window: 4, DeliveriesPerSec: 3e6},
		Record{Scenario: Deflate, Lib: Ours, Conns: 100, Payload: 1024, MsgsPerSec: 10e3, Extension: "permessage-deflate; client_no_context_takeover"},
		Record{Scenario: Deflate, Lib: Ours, Variant: "nocontext", Conns: 100, Payload: 1024, MsgsPerSec: 40e3, Extension: noCtx},
		Record{Scenario: Deflate, Lib: "gws", Conns: 100, Payload: 1024, MsgsPerSec: 30e3, Extension: noCtx},
		Record{Scenario: DeflateIdle, Lib: "gws", Conns: 5000, BytesPerConn: 14000, Extension: noCtx},
		Record{Scenario: DeflateIdle, Lib: Ours, Variant: "nocontext", Conns: 5000, BytesPerConn: 12000, Extension: noCtx},
	)
	for _, n := range []int{1000, 19000} {
		recs = append(recs,
			Record{Scenario: Idle, Lib: Ours, Conns: n, BytesPerConn: 5000},
			Record{Scenario: Idle, Lib: "gws", Conns: n, BytesPerConn: 9000},
			Record{Scenario: Idle, Lib: Floor, Conns: n, BytesPerConn: 3800},
			Record{Scenario: IdleVariant, Lib: Ours, Variant: "accept", Conns: n, BytesPerConn: 4800},
			Record{Scenario: IdleVariant, Lib: Ours, Variant: "events", Conns: n, BytesPerConn: 1500})
	}
	return recs
}

// statuses evaluates the targets and returns their statuses by the first
// word of their names (Echo:, Pipelined, Broadcast, permessage-deflate,
// Idle: ×2, Event-loop ×2), with the figures.
func statuses(t *testing.T, recs []Record) ([]status, []target) {
	t.Helper()
	ts := newAgg(fixture(recs...)).targets()
	if len(ts) != 9 {
		t.Fatalf("%d targets, want the issue's 9: %+v", len(ts), ts)
	}
	var out []status
	for _, x := range ts {
		out = append(out, x.status)
	}
	return out, ts
}

// change returns recs with f applied to the records of (scenario, series).
func change(recs []Record, scenario, series string, f func(*Record)) []Record {
	out := append([]Record(nil), recs...)
	for i := range out {
		if out[i].Scenario == scenario && Series(out[i].Lib, out[i].Variant) == series {
			f(&out[i])
		}
	}
	return out
}

func TestTargetsAllMet(t *testing.T) {
	st, ts := statuses(t, onTarget())
	for i, s := range st {
		if s != met {
			t.Errorf("%s: %v (%s), want met", ts[i].name, s, ts[i].figure)
		}
	}
	for i, want := range []string{
		"c=100 64 B 0.80× (1 round), c=100 16 KiB 0.80× (1 round) (duplex ÷ gws)",
		"c=100 64 B 0.90× (1 round), c=100 16 KiB 0.90× (1 round) (duplex ÷ gws)",
		"c=100 64 B 1.25× (1 round) (duplex pipelined ÷ tcp at 1 in flight)",
		"to 1000, 64 B, ÷ gws 1.33× (1 round)",
		"c=100 1 KiB 1.33× (1 round) (duplex (nocontext) ÷ gws, both no takeover)",
		"c=19000 1.26× (duplex (accept) ÷ tcp)",
		"c=19000 1.04× (duplex ÷ duplex (accept))",
		"1.46 KiB at c=19000",
		"c=100 64 B 0.95× (1 round), c=100 16 KiB 0.95× (1 round) (duplex (events) ÷ duplex)",
	} {
		if ts[i].figure != want {
			t.Errorf("%s: figures %q, want %q", ts[i].name, ts[i].figure, want)
		}
	}
}

// Each target fails on its own when its figure crosses its bound, and only
// that one.
func TestTargetsEachNotMet(t *testing.T) {
	for _, c := range []struct {
		which            int
		scenario, series string
		f                func(*Record)
	}{
		{0, Echo, Ours, func(r *Record) {
			if r.Payload == 16<<10 {
				r.CPUPerMsg = 5.5 // one cell over gws's 5 is enough
			}
		}},
		{1, Echo, Ours, func(r *Record) { r.P99 = 1001 }},
		{2, Pipelined, Ours, func(r *Record) { r.MsgsPerSec = 119e3 }}, // under tcp's 120k at one in flight
		{3, Broadcast, Ours, func(r *Record) { r.DeliveriesPerSec = 1.4e6 }},
		{4, Deflate, Series(Ours, "nocontext"), func(r *Record) { r.MsgsPerSec = 29e3 }},
		{5, IdleVariant, Series(Ours, "accept"), func(r *Record) { r.BytesPerConn = 1.51 * 3800 }},
		{6, Idle, Ours, func(r *Record) { r.BytesPerConn = 1.11 * 4800 }},
		{7, IdleVariant, Series(Ours, "events"), func(r *Record) { r.BytesPerConn = 2049 }},
		{8, EchoVariant, Series(Ours, "events"), func(r *Record) {
			if r.Payload == 64 {
				r.MsgsPerSec = 89e3 // one cell under 90% of Open's 100k is enough
			}
		}},
		{8, EchoVariant, Series(Ours, "events"), func(r *Record) { // a failed run is no figure to skip
			if r.Payload == 64 {
				r.MsgsPerSec, r.Err = 0, "no echo in the measured window"
			}
		}},
	} {
		st, ts := statuses(t, change(onTarget(), c.scenario, c.series, c.f))
		for i, s := range st {
			want := met
			if i == c.which {
				want = notMet
			}
			if s != want {
				t.Errorf("%s changed: %s is %v (%s), want %v", c.series, ts[i].name, s, ts[i].figure, want)
			}
		}
	}
}

// inRounds is recs run n times: a copy of each record in rounds 1 to n.
func inRounds(recs []Record, n int) []Record {
	var out []Record
	for round := 1; round <= n; round++ {
		for _, r := range recs {
			r.Round = round
			out = append(out, r)
		}
	}
	return out
}

// echoCPU sets series' echo CPU per message round by round (v[0] in round
// 1), in both echo cells; NaN is a failed run.
func echoCPU(recs []Record, series string, v ...float64) []Record {
	return change(recs, Echo, series, func(r *Record) {
		r.CPUPerMsg, r.Err = v[r.Round-1], ""
		if math.IsNaN(r.CPUPerMsg) {
			r.CPUPerMsg, r.Err = 0, "server exited"
		}
	})
}

// Targets against a peer are judged on the median of the ratios taken
// within each round, not on the ratio of the medians: here round 3 is slow
// for everyone and the fast rounds are noisy, so the medians come from
// different rounds and their ratio says the opposite.
func TestTargetsPaired(t *testing.T) {
	for _, c := range []struct {
		name        string
		duplex, gws []float64
		want        status
		figure      string
	}{
		{"paired under, medians over", []float64{11, 9.69, 19}, []float64{10, 10.2, 20}, met,
			"c=100 64 B 0.95× (paired; 0.95–1.10 over 3 rounds; medians' ratio 1.08×)"},
		// one round of three under: the miss is within the noise
		{"paired over, medians under", []float64{9, 9.45, 21}, []float64{10, 9, 20}, notMetNoise,
			"c=100 64 B 1.05× (paired; 0.90–1.05 over 3 rounds; medians' ratio 0.94×)"},
		// every round over: a miss beyond the noise
		{"paired over in every round", []float64{11, 9.45, 21}, []float64{10, 9, 20}, notMet,
			"c=100 64 B 1.05× (paired; 1.05–1.10 over 3 rounds; medians' ratio 1.10×)"},
	} {
		recs := echoCPU(echoCPU(inRounds(onTarget(), 3), Ours, c.duplex...), "gws", c.gws...)
		st, ts := statuses(t, recs)
		if st[0] != c.want || !strings.HasPrefix(ts[0].figure, c.figure) {
			t.Errorf("%s: %v (%s), want %v (%s…)", c.name, st[0], ts[0].figure, c.want, c.figure)
		}
	}
}

// The median's interval is the k-th smallest to the k-th largest per-round
// ratio, k as large as a confidence of at least 90% allows; over 5 rounds
// or fewer it is min–max. A cell whose interval differs from min–max says
// so in its figure.
func TestMedianInterval(t *testing.T) {
	vals := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(i + 1)
		}
		return v
	}
	for _, c := range []struct {
		n            int
		lo, hi, conf float64
	}{{1, 1, 1, 0}, {3, 1, 3, 0.75}, {4, 1, 4, 0.875}, {5, 1, 5, 0.9375}, {8, 2, 7, 1 - 18.0/256}, {10, 2, 9, 1 - 22.0/1024}, {17, 5, 13, 1 - 2*3214.0/131072}} {
		lo, hi, conf := medianInterval(vals(c.n))
		if lo != c.lo || hi != c.hi || math.Abs(conf-c.conf) > 1e-9 {
			t.Errorf("%d rounds: %v–%v at %.4f, want %v–%v at %.4f", c.n, lo, hi, conf, c.lo, c.hi, c.conf)
		}
	}
	p := pairing{stat: stat{med: 1.1, min: 0.8, max: 1.4, n: 8}, lo: 0.9, hi: 1.3, conf: 0.93, medians: 1.1}
	if got, want := p.figure("c=1"), "c=1 1.10× (paired; 0.80–1.40 over 8 rounds, 93% interval of the median 0.90–1.30; medians' ratio 1.10×)"; got != want {
		t.Errorf("figure %q, want %q", got, want)
	}
	if !p.withinNoise(atMost(1)) || p.withinNoise(atLeast(1.35)) {
		t.Error("withinNoise: an interval of 0.90–1.30 reaches 1 from above and not 1.35 from below")
	}
}

// A round where either side failed is left out of the pairing, whichever
// side it was; a cell where no round has both figures counts as failed.
func TestTargetsPairedFailedRounds(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name        string
		duplex, gws []float64
		want        status
		figure      string
	}{
		// paired with the failed round's 0 the median would be 1.00, met
		{"duplex failed in round 2", []float64{4, nan, 6, 6}, []float64{5, 5, 5, 5}, notMetNoise,
			"c=100 64 B 1.20× (paired; 0.80–1.20 over 3 rounds; medians' ratio 1.20×)"},
		{"gws failed in round 2", []float64{4, 6, 4, 6}, []float64{5, nan, 5, 5}, met,
			"c=100 64 B 0.80× (paired; 0.80–1.20 over 3 rounds; medians' ratio 1.00×)"},
		{"no round with both", []float64{nan, nan, 4, 4}, []float64{5, 5, nan, nan}, notMet,
			"c=100 64 B failed, c=100 16 KiB failed"},
	} {
		recs := echoCPU(echoCPU(inRounds(onTarget(), 4), Ours, c.duplex...), "gws", c.gws...)
		st, ts := statuses(t, recs)
		if st[0] != c.want || !strings.HasPrefix(ts[0].figure, c.figure) {
			t.Errorf("%s: %v (%s), want %v (%s…)", c.name, st[0], ts[0].figure, c.want, c.figure)
		}
	}
}

// A target whose cells the run lacks is not measured, never met: no
// broadcast at W=1, no event-loop mode, the event loop not at 19k, and the
// deflate target when no Duplex series runs in gws's mode.
func TestTargetsNotMeasured(t *testing.T) {
	var recs []Record
	for _, r := range onTarget() {
		switch {
		case r.Scenario == Broadcast && r.Window == 1:
		case Series(r.Lib, r.Variant) == Series(Ours, "events"):
		case Series(r.Lib, r.Variant) == Series(Ours, "nocontext"):
		default:
			recs = append(recs, r)
		}
	}
	st, ts := statuses(t, recs)
	for i, want := range []status{met, met, met, notMeasured, notMeasured, met, met, notMeasured, notMeasured} {
		if st[i] != want {
			t.Errorf("%s: %v (%s), want %v", ts[i].name, st[i], ts[i].figure, want)
		}
	}
	var small []Record // the event loop measured, but only up to 5000
	for _, r := range onTarget() {
		if r.Conns == 19000 {
			r.Conns = 5000
		}
		small = append(small, r)
	}
	if st, ts := statuses(t, small); st[7] != notMeasured || ts[7].figure != "largest count in this run: 5000" {
		t.Errorf("event loop up to 5000: %v (%s), want not measured", st[7], ts[7].figure)
	}
}

// The compression mode comes from the server's handshake answer when a
// record kept it, else from what the bench servers are known to negotiate.
func TestDeflateMode(t *testing.T) {
	a := newAgg(fixture(
		Record{Scenario: Deflate, Lib: "gws", Conns: 100, Payload: 1024, MsgsPerSec: 1, Extension: "permessage-deflate"},
		Record{Scenario: Deflate, Lib: "nbio", Conns: 100, Payload: 1024, MsgsPerSec: 1},
	))
	for series, want := range map[string]string{"gws": takeover, "nbio": noTakeover, Series(Ours, "nocontext"): noTakeover, "other": ""} {
		if got := a.deflateMode(series); got != want {
			t.Errorf("deflateMode(%q) = %q, want %q", series, got, want)
		}
	}
}

// The report puts the targets in a table of their own, with their status.
func TestTargetSection(t *testing.T) {
	var b strings.Builder
	newAgg(fixture(change(onTarget(), Echo, Ours, func(r *Record) { r.P99 = 2000 })...)).targetSection(&b)
	wantContains(t, "the targets section", b.String(),
		"| target | status | figures |",
		"| Echo: p99 at or below gws's, every size and connection count | **not met** | c=100 64 B 2.00× (1 round), c=100 16 KiB 2.00× (1 round) (duplex ÷ gws) |",
		"| Event-loop mode: at most 2.00 KiB per idle connection at 19k connections | met | 1.46 KiB at c=19000 |",
	)
}

// With steady figures (after a collection) the three idle targets are
// judged again on them, apart from the figures right after the handshakes:
// here Accept is over the bound right after them and within it steady, the
// event loop the other way round.
func TestTargetsIdleSteady(t *testing.T) {
	recs := onTarget()
	steady := map[string]float64{Ours: 4000, Floor: 3000, "gws": 8000, Series(Ours, "accept"): 3900, Series(Ours, "events"): 2100}
	for i := range recs {
		r := &recs[i]
		if (r.Scenario == Idle || r.Scenario == IdleVariant) && r.Conns == 19000 {
			r.SteadyBytesPerConn = steady[Series(r.Lib, r.Variant)]
		}
	}
	recs = change(recs, IdleVariant, Series(Ours, "accept"), func(r *Record) { r.BytesPerConn = 1.6 * 3800 })
	recs = change(recs, Idle, Ours, func(r *Record) { r.BytesPerConn = 1.6 * 3800 })
	ts := newAgg(fixture(recs...)).targets()
	if len(ts) != 12 {
		t.Fatalf("%d targets, want the issue's 9 and the 3 idle ones steady", len(ts))
	}
	for i, want := range map[int]status{5: notMet, 6: met, 7: met, 8: met, 9: met, 10: met, 11: notMet} {
		if ts[i].status != want {
			t.Errorf("%s: %v (%s), want %v", ts[i].name, ts[i].status, ts[i].figure, want)
		}
	}
	if !strings.Contains(ts[9].name, "steady (after the runtime's periodic collection)") || ts[9].figure != "c=19000 1.30× (duplex (accept) ÷ tcp)" {
		t.Errorf("%s: %q", ts[9].name, ts[9].figure)
	}

	// A run that counted its collections says how many came before the
	// steady figures, in the targets and in the idle section.
	for i := range recs {
		if recs[i].SteadyBytesPerConn > 0 {
			recs[i].SteadyCollections = SteadyCollections
		}
	}
	a := newAgg(fixture(recs...))
	if ts := a.targets(); !strings.Contains(ts[9].name, "steady (after 2 of the runtime's periodic collections)") {
		t.Errorf("with the collections counted: %s", ts[9].name)
	}
	var b strings.Builder
	a.idle(&b, nil)
	if !strings.Contains(b.String(), "after 2 garbage collections") {
		t.Errorf("the idle section does not say how many collections came before the steady figures:\n%s", b.String())
	}
}

// The echo section shows Duplex's event loop beside Open, apart from the
// main tables, with its ratios to Open.
func TestEchoModes(t *testing.T) {
	var b strings.Builder
	a := newAgg(fixture(onTarget()...))
	a.echo(&b, nil)
	out := b.String()
	wantContains(t, "the echo section", out,
		"#### Duplex's modes, 100 connections",
		"| payload | duplex, Open (above) | duplex (events) |",
		"| 64 B | 100.0k | 95.0k |",
		"| 64 B | 0.95× · 1.05× · 1.06× |",
	)
	if main := out[:strings.Index(out, "#### Duplex's modes")]; strings.Contains(main, "events") {
		t.Errorf("the main echo tables show the event loop:\n%s", main)
	}
}
