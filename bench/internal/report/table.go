package report

import (
	"fmt"
	"strings"
)

type table struct {
	head []string
	rows [][]string
}

func (t *table) String() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(t.head)) + "\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// grid is the report's one table builder: a row per row key, headed by
// rowHead, and a column per column key, headed by colHead, each cell
// rendered by render. Every table of figures by server goes through it,
// whichever way round it stands (cells down and servers across, or servers
// down and metrics across).
func grid[R, C any](corner string, rows []R, rowHead func(R) string, cols []C, colHead func(C) string, render func(R, C) string) *table {
	t := &table{head: []string{corner}}
	for _, c := range cols {
		t.head = append(t.head, colHead(c))
	}
	for _, r := range rows {
		row := []string{rowHead(r)}
		for _, c := range cols {
			row = append(row, render(r, c))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// column is a server in a table: the series whose figures it shows, and its
// heading.
type column struct{ series, head string }

func columnHead(c column) string { return c.head }

// columns is a column per library (the floor headed "tcp floor"; none for
// it in deflate, as it does not compress), then one per variant series of
// the scenario given in withVariants.
func (a *agg) columns(scenario string, withVariants bool) []column {
	var out []column
	for _, l := range a.libs {
		switch {
		case l == Floor && scenario == Deflate:
		case l == Floor:
			out = append(out, column{l, "tcp floor"})
		default:
			out = append(out, column{l, l})
		}
	}
	if withVariants {
		for _, v := range a.variants[scenario] {
			out = append(out, column{v, v})
		}
	}
	return out
}

// payloadHead heads the rows of an echo-type table.
func payloadHead(x at) string { return Size(x.payload) }

// connsHead heads the rows of an idle table.
func connsHead(x at) string { return fmt.Sprint(x.conns) }

// values renders a series' median with its spread.
func (a *agg) values(f metric, format func(float64) string) func(at, column) string {
	return func(x at, c column) string { return cell(a.stat(x, c.series, f), format, true) }
}

// several renders several medians of a series in one cell, as format puts
// them ("p50 / p99 / p99.9"), or why there are none.
func (a *agg) several(format func(v ...float64) string, fs ...metric) func(at, column) string {
	return func(x at, c column) string {
		first := a.stat(x, c.series, fs[0])
		if !first.ok() {
			return cell(first, num, false)
		}
		v := []float64{first.med}
		for _, f := range fs[1:] {
			v = append(v, a.stat(x, c.series, f).med)
		}
		return format(v...)
	}
}

// ratios says how a series' median compares, as "A× · B×": A against the
// best library's median in the cell, B against the floor's. For
// lower-is-better metrics a ratio above 1 is worse.
type ratios struct {
	f      metric
	higher bool
	// among filters the libraries that can be best (nil: every library).
	among func(x at, series string) func(lib string) bool
	// floor is the reference of B, nil for none; the floor's own column
	// reads "1×" when floorSelf (B would be its ratio to itself).
	floor     func(x at) stat
	floorSelf bool
}

// sameCellFloor is the floor in the same cell.
func (a *agg) sameCellFloor(f metric) func(x at) stat {
	return func(x at) stat { return a.stat(x, Floor, f) }
}

func (a *agg) ratio(r ratios) func(at, column) string {
	return func(x at, c column) string {
		s := a.stat(x, c.series, r.f)
		switch {
		case !s.ok():
			return cell(s, num, false)
		case c.series == Floor && r.floorSelf:
			return "1×"
		}
		var among func(string) bool
		if r.among != nil {
			among = r.among(x, c.series)
		}
		_, best := a.best(x, r.f, r.higher, among)
		out := ratio(s.med, best)
		if r.floor != nil {
			out += " · " + ratio(s.med, r.floor(x).orNaN())
		}
		return out
	}
}
