package report

import "testing"

// grid lays rows down and columns across, whatever their types.
func TestGrid(t *testing.T) {
	got := grid("n", []int{1, 2}, func(r int) string { return string(rune('0' + r)) },
		[]string{"x", "y"}, func(c string) string { return c + "!" },
		func(r int, c string) string { return c + string(rune('0'+r)) }).String()
	want := "| n | x! | y! |\n| --- | --- | --- |\n| 1 | x1 | y1 |\n| 2 | x2 | y2 |\n"
	if got != want {
		t.Errorf("grid:\n%s\nwant:\n%s", got, want)
	}
}

// The renderers of the tables by server: values with their spread, several
// medians in one cell, and ratios to the best library and the floor (the
// floor's own column 1× when it is its own reference; no B without floor).
func TestRenderers(t *testing.T) {
	var recs []Record
	for round, v := range []float64{90, 110, 100} {
		recs = append(recs,
			Record{Scenario: Echo, Lib: Ours, Round: round + 1, Conns: 100, Payload: 64, MsgsPerSec: v, P50: 10, P99: 20},
			Record{Scenario: Echo, Lib: "gws", Round: round + 1, Conns: 100, Payload: 64, MsgsPerSec: 2 * v, P50: 5, P99: 9},
			Record{Scenario: Echo, Lib: Floor, Round: round + 1, Conns: 100, Payload: 64, MsgsPerSec: 4 * v})
	}
	recs = append(recs, Record{Scenario: Echo, Lib: "coder", Conns: 100, Payload: 64, Err: "server exited"})
	a := newAgg(fixture(recs...))
	rows := a.cellsWith(Echo, 100)
	cols := a.columns(Echo, false)
	for _, c := range []struct {
		name   string
		render func(at, column) string
		want   string
	}{
		{"values", a.values(msgsPerSec, num), "| 64 B | 100 (90.0–110) | 200 (180–220) | 400 (360–440) | failed |\n"},
		{"several", a.several(func(v ...float64) string { return us(v[0]) + " / " + us(v[1]) }, p50, p99), "| 64 B | 10.0 µs / 20.0 µs | 5.0 µs / 9.0 µs | 0.0 µs / 0.0 µs | failed |\n"},
		{"ratios", a.ratio(ratios{f: msgsPerSec, higher: true, floor: a.sameCellFloor(msgsPerSec), floorSelf: true}), "| 64 B | 0.50× · 0.25× | 1.00× · 0.50× | 1× | failed |\n"},
		{"ratios, no floor", a.ratio(ratios{f: msgsPerSec, higher: true}), "| 64 B | 0.50× | 1.00× | 2.00× | failed |\n"},
		{"ratios among all but gws", a.ratio(ratios{f: msgsPerSec, higher: true, among: func(at, string) func(string) bool {
			return func(lib string) bool { return lib != "gws" }
		}}), "| 64 B | 1.00× | 2.00× | 4.00× | failed |\n"},
	} {
		got := grid("payload", rows, payloadHead, cols, columnHead, c.render).String()
		head := "| payload | duplex | gws | tcp floor | coder |\n| --- | --- | --- | --- | --- |\n"
		if got != head+c.want {
			t.Errorf("%s:\n%s\nwant:\n%s", c.name, got, head+c.want)
		}
	}
}
