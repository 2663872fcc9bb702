package report

import (
	"strings"
	"testing"
)

// withHijackFloor is onTarget with the net/http hijack floor run beside
// Duplex's idle modes at 1.10× the TCP floor: below every library, so that
// it would be the best peer if it counted as one.
func withHijackFloor() []Record {
	recs := onTarget()
	for _, n := range []int{1000, 19000} {
		recs = append(recs, Record{Scenario: IdleVariant, Lib: Floor, Variant: HijackVariant, Conns: n, BytesPerConn: 1.1 * 3800})
	}
	return recs
}

// renderIdle is the idle section the report writes for recs.
func renderIdle(recs []Record) string {
	var b strings.Builder
	newAgg(fixture(recs...)).idle(&b, nil)
	return b.String()
}

// The hijack floor is a column of its own beside the TCP floor in Duplex's
// modes, with its ratio to the TCP floor, and every mode's ratio to it; it
// is no mode of Duplex's, and the modes' best peer is still gws.
func TestIdleModesHijackFloor(t *testing.T) {
	out := renderIdle(withHijackFloor())
	modes := out[strings.Index(out, "### Duplex's modes"):]
	wantContains(t, "Duplex's modes", modes,
		"| connections | duplex, Open (above) | duplex (accept) | duplex (events) | tcp floor | net/http hijack floor |",
		"| 19000 | 4.88 KiB | 4.69 KiB | 1.46 KiB | 3.71 KiB | 4.08 KiB |",
		"Beside the TCP floor, the **net/http hijack floor**: no WebSocket library",
		"Ratios `A× · B× · H× · C×`",
		// A against gws (9000), B the TCP floor (3800), H the hijack floor (4180), C Open (5000)
		"| 19000 | 0.56× · 1.32× · 1.20× | 0.53× · 1.26× · 1.15× · 1.04× | 0.17× · 0.39× · 0.36× · 3.33× | 1.10× |",
	)
	if strings.Contains(modes, "**"+HijackFloor+"**") || strings.Contains(modes, "| "+HijackFloor+" |") {
		t.Errorf("the hijack floor shows as one of Duplex's modes:\n%s", modes)
	}
	if main := out[:strings.Index(out, "### Duplex's modes")]; strings.Contains(main, "hijack") {
		t.Errorf("the main idle tables show the hijack floor:\n%s", main)
	}
}

// The steady modes table has the hijack floor's column too.
func TestIdleModesHijackFloorSteady(t *testing.T) {
	recs := withHijackFloor()
	for i := range recs {
		if (recs[i].Scenario == Idle || recs[i].Scenario == IdleVariant) && recs[i].Conns == 19000 {
			recs[i].SteadyBytesPerConn, recs[i].SteadyCollections = recs[i].BytesPerConn/1.2, SteadyCollections
		}
	}
	out := renderIdle(recs)
	steady := out[strings.Index(out, "#### Duplex's modes, steady"):]
	wantContains(t, "Duplex's modes, steady", steady,
		"| connections | duplex, Open (above) | duplex (accept) | duplex (events) | tcp floor | net/http hijack floor |",
		"| 19000 | 4.07 KiB | 3.91 KiB | 1.22 KiB | 3.09 KiB | 3.40 KiB |",
		"| 19000 | 0.56× · 1.32× · 1.20× | 0.53× · 1.26× · 1.15× · 1.04× | 0.17× · 0.39× · 0.36× · 3.33× | 1.10× |",
	)
}

// The summary compares Duplex's series with the field; the hijack floor is
// none of them, and no row's best peer is it.
func TestSummaryLeavesOutHijackFloor(t *testing.T) {
	var b strings.Builder
	newAgg(fixture(withHijackFloor()...)).summary(&b)
	out := b.String()
	if strings.Contains(out, "hijack") {
		t.Errorf("the summary shows the hijack floor:\n%s", out)
	}
	if want := "| idle c=19000, duplex (accept) | bytes/conn | 4.69 KiB | gws 8.79 KiB | 0.53× | 1.26× |"; !strings.Contains(out, want) {
		t.Errorf("the summary lacks %q:\n%s", want, out)
	}
}

// The Accept idle target stays judged against the TCP floor, the hijack
// floor's ratios beside its figure for reference: the verdicts are those of
// the same run without it, here with Accept over the bound against the TCP
// floor and well within it against the hijack floor.
func TestTargetsHijackFloorBeside(t *testing.T) {
	over := func(recs []Record) []Record {
		return change(recs, IdleVariant, Series(Ours, "accept"), func(r *Record) { r.BytesPerConn = 1.6 * 3800 })
	}
	st, ts := statuses(t, over(withHijackFloor()))
	without, _ := statuses(t, over(onTarget()))
	for i := range st {
		if st[i] != without[i] {
			t.Errorf("%s: %v (%s) with the hijack floor, %v without", ts[i].name, st[i], ts[i].figure, without[i])
		}
	}
	if st[5] != notMet {
		t.Errorf("%s: %v, want not met", ts[5].name, st[5])
	}
	if want := "c=19000 1.60× (duplex (accept) ÷ tcp; beside it the net/http hijack floor ÷ tcp 1.10×, duplex (accept) ÷ it 1.45×)"; ts[5].figure != want {
		t.Errorf("%s: figures %q, want %q", ts[5].name, ts[5].figure, want)
	}
}
