package report

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Floor is the name of the plain TCP echo.
const Floor = "tcp"

// Ours is the name of the library this harness exists for.
const Ours = "duplex"

// stat is the median, min and max of one metric over the rounds.
type stat struct {
	med, min, max float64
	n             int
	na            bool
	err           string
}

func (s stat) ok() bool { return s.n > 0 }

// orNaN is the median, or NaN when there is none (ratio prints "–" then).
func (s stat) orNaN() float64 {
	if !s.ok() {
		return math.NaN()
	}
	return s.med
}

// at is one cell of a scenario: for broadcast, the window is folded into
// payload (payload*1000+window) so that every scenario has the same two
// numbers per cell.
type at struct {
	scenario       string
	conns, payload int
}

// cellKey is one cell of one series (a library, or a variant of its server:
// Series).
type cellKey struct {
	at
	series string
}

func payloadKey(r Record) int {
	if r.Scenario == Broadcast || r.Scenario == HubBroadcast {
		return r.Payload*1000 + r.Window
	}
	return r.Payload
}

// metric reads one figure of a record.
type metric func(Record) float64

// Metrics.
var (
	msgsPerSec metric = func(r Record) float64 { return r.MsgsPerSec }
	cpuPerMsg  metric = func(r Record) float64 { return r.CPUPerMsg }
	p50        metric = func(r Record) float64 { return r.P50 }
	p99        metric = func(r Record) float64 { return r.P99 }
	p999       metric = func(r Record) float64 { return r.P999 }
	perConn    metric = func(r Record) float64 { return r.BytesPerConn }
	steadyConn metric = func(r Record) float64 { return r.SteadyBytesPerConn }
	deliveries metric = func(r Record) float64 { return r.DeliveriesPerSec }
	loadBusy   metric = func(r Record) float64 { return r.LoadBusy }
	reads      metric = func(r Record) float64 { return r.ReadsPerMsg }
	writes     metric = func(r Record) float64 { return r.WritesPerMsg }
	serverBusy metric = func(r Record) float64 { return r.ServerBusy }
	replyBytes metric = func(r Record) float64 { return r.ReplyBytes }
	setupCPU   metric = func(r Record) float64 { return r.SetupCPU }
)

// agg groups the records by cell and series.
type agg struct {
	res  *Results
	recs map[cellKey][]Record
	libs []string // the libraries, in the report's order (the hub only in its own section)
	// variants are, per scenario, the series of server variants that ran
	// in it ("duplex (accept)"), in the order they first appear.
	variants map[string][]string
}

func newAgg(res *Results) *agg {
	a := &agg{res: res, recs: map[cellKey][]Record{}, variants: map[string][]string{}}
	for _, l := range res.Libs {
		if l.Name != Hub {
			a.libs = append(a.libs, l.Name)
		}
	}
	seen := map[cellKey]bool{}
	for _, r := range res.Records {
		s := Series(r.Lib, r.Variant)
		k := cellKey{at{r.Scenario, r.Conns, payloadKey(r)}, s}
		a.recs[k] = append(a.recs[k], r)
		if v := (cellKey{at{scenario: r.Scenario}, s}); r.Variant != "" && !seen[v] {
			seen[v] = true
			a.variants[r.Scenario] = append(a.variants[r.Scenario], s)
		}
	}
	return a
}

// stat is the median, min and max of f over the rounds of one series in
// one cell.
func (a *agg) stat(x at, series string, f metric) stat {
	var vals []float64
	var s stat
	for _, r := range a.recs[cellKey{x, series}] {
		switch {
		case r.NA:
			s.na = true
		case !measured(r, f):
			s.err = r.Err
		default:
			vals = append(vals, f(r))
		}
	}
	s.summarize(vals)
	return s
}

// measured says whether r has a figure by f: it is no failed run (a run
// that failed after measuring keeps its figure).
func measured(r Record, f metric) bool { return !r.NA && (r.Err == "" || f(r) != 0) }

// summarize sets the median, min and max of vals (none: s stays not ok).
func (s *stat) summarize(vals []float64) {
	if len(vals) == 0 {
		return
	}
	sort.Float64s(vals)
	s.n = len(vals)
	s.min, s.max = vals[0], vals[len(vals)-1]
	if len(vals)%2 == 1 {
		s.med = vals[len(vals)/2]
	} else {
		s.med = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
	}
}

// cells lists the cells of a scenario, sorted by connections and payload.
func (a *agg) cells(scenario string) []at {
	seen := map[at]bool{}
	var out []at
	for k := range a.recs {
		if k.scenario == scenario && !seen[k.at] {
			seen[k.at] = true
			out = append(out, k.at)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].conns != out[j].conns {
			return out[i].conns < out[j].conns
		}
		return out[i].payload < out[j].payload
	})
	return out
}

// cellsWith is the cells of a scenario with conns connections.
func (a *agg) cellsWith(scenario string, conns int) []at {
	var out []at
	for _, c := range a.cells(scenario) {
		if c.conns == conns {
			out = append(out, c)
		}
	}
	return out
}

// conns lists the connection counts of a scenario, ascending.
func (a *agg) conns(scenario string) []int {
	var out []int
	for _, c := range a.cells(scenario) {
		if len(out) == 0 || out[len(out)-1] != c.conns {
			out = append(out, c.conns)
		}
	}
	return out
}

// best is the best median among the WebSocket libraries in among (all the
// libraries if nil; the floor and the variants never count), and its
// library; NaN and "" when none has one.
func (a *agg) best(x at, f metric, higher bool, among func(lib string) bool) (string, float64) {
	bestLib, bestV := "", math.NaN()
	for _, l := range a.libs {
		if l == Floor || among != nil && !among(l) {
			continue
		}
		s := a.stat(x, l, f)
		if !s.ok() {
			continue
		}
		if math.IsNaN(bestV) || higher && s.med > bestV || !higher && s.med < bestV {
			bestLib, bestV = l, s.med
		}
	}
	return bestLib, bestV
}

// peers is best's filter for the libraries other than Duplex.
func peers(lib string) bool { return lib != Ours }

func (a *agg) maxOf(scenario string, f metric) float64 {
	m := 0.0
	for _, r := range a.res.Records {
		if r.Scenario == scenario {
			m = math.Max(m, f(r))
		}
	}
	return m
}

// Write writes results.json, REPORT.md and the plots into dir.
func Write(res *Results, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	a := newAgg(res)
	plots, err := a.plots(dir)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "REPORT.md"), []byte(a.markdown(plots)), 0o644)
}
