package harness

import (
	"fmt"
	"strings"
	"testing"

	"github.com/duplexws/duplex/bench/internal/report"
)

// The idle and deflate-idle scenarios run in the first IdleRounds rounds
// only, every round by default; the others in every round.
func TestPlanIdleRounds(t *testing.T) {
	for _, c := range []struct {
		idleRounds, want int
	}{{0, 3}, {1, 1}, {5, 3}} {
		o := Options{Rounds: 3, IdleRounds: c.idleRounds, Libs: []string{report.Ours, "gws"},
			Scenarios: []string{report.Echo, report.Idle, report.DeflateIdle}, DuplexVariants: []string{}, DuplexEchoVariants: []string{}}
		o.Defaults()
		r := &runner{opt: o, libs: map[string]*report.Lib{report.Ours: {Name: report.Ours}}}
		runs := map[string]int{} // runs of each scenario, by round
		for _, task := range r.plan() {
			round, scenario, _ := strings.Cut(task.label, " ")
			scenario, _, _ = strings.Cut(scenario, " ")
			runs[round+" "+scenario]++
		}
		for round := 1; round <= 3; round++ {
			want := map[string]int{report.Echo: len(o.EchoConns) * len(o.Payloads) * 2, report.Idle: 2, report.DeflateIdle: 3} // deflate-idle: duplex twice (nocontext)
			if round > c.want {
				want[report.Idle], want[report.DeflateIdle] = 0, 0
			}
			for scenario, n := range want {
				if got := runs[fmt.Sprintf("r%d %s", round, scenario)]; got != n {
					t.Errorf("-idle-rounds %d: round %d has %d %s runs, want %d", c.idleRounds, round, got, scenario, n)
				}
			}
		}
	}
}

// TestPlanShufflesEachCell: every cell of a round runs each library once,
// and over the rounds a library does not always follow the same one (as it
// did when one order was rotated per round: duplex always after tcp).
func TestPlanShufflesEachCell(t *testing.T) {
	o := Options{Rounds: 5, Libs: []string{report.Ours, "gorilla", "coder", "gws", "gobwas", "nbio", "tcp"},
		Scenarios: []string{report.Echo}, EchoConns: []int{100}, Payloads: []int{64}, DuplexVariants: []string{}, DuplexEchoVariants: []string{}}
	o.Defaults()
	r := &runner{opt: o, libs: map[string]*report.Lib{report.Ours: {Name: report.Ours}}}
	before := map[string]bool{} // what ran just before duplex, over the rounds
	runs := map[string]map[string]int{}
	prev := map[string]string{}
	for _, task := range r.plan() {
		round, rest, _ := strings.Cut(task.label, " ")
		f := strings.Fields(rest) // scenario, library, cell
		lib := f[1]
		if runs[round] == nil {
			runs[round] = map[string]int{}
		}
		runs[round][lib]++
		if lib == report.Ours && prev[round] != "" {
			before[prev[round]] = true
		}
		prev[round] = lib
	}
	for round, libs := range runs {
		for _, l := range o.Libs {
			if libs[l] != 1 {
				t.Errorf("%s: %s ran %d times in the cell, want once", round, l, libs[l])
			}
		}
	}
	if len(before) < 2 {
		t.Errorf("over %d rounds duplex always ran after %v", o.Rounds, before)
	}
}

// Whenever the TCP floor and the idle scenario both run, each idle round
// also runs the net/http hijack floor (servers/tcp -variant hijack), once,
// but with NoHijackFloor (-hijack-floor=false); the load generator speaks
// WebSocket to it.
func TestPlanIdleHijackFloor(t *testing.T) {
	for _, c := range []struct {
		libs []string
		no   bool
		want int
	}{
		{[]string{report.Ours, "gws", report.Floor}, false, 1},
		{[]string{report.Floor}, false, 1},
		{[]string{report.Ours, "gws"}, false, 0},
		{[]string{report.Ours, "gws", report.Floor}, true, 0},
	} {
		o := Options{Rounds: 3, IdleRounds: 2, Libs: c.libs, Scenarios: []string{report.Echo, report.Idle},
			DuplexVariants: []string{"accept"}, DuplexEchoVariants: []string{}, NoHijackFloor: c.no}
		o.Defaults()
		r := &runner{opt: o, libs: map[string]*report.Lib{}}
		for _, l := range c.libs {
			r.libs[l] = &report.Lib{Name: l}
		}
		runs := map[string]int{}
		for _, task := range r.plan() {
			if strings.Contains(task.label, report.HijackFloor) {
				round, _, _ := strings.Cut(task.label, " ")
				runs[round]++
			}
		}
		for round := 1; round <= 3; round++ {
			want := c.want
			if round > o.IdleRounds {
				want = 0
			}
			if got := runs[fmt.Sprintf("r%d", round)]; got != want {
				t.Errorf("-libs %v, NoHijackFloor %v: round %d runs the hijack floor %d times, want %d", c.libs, c.no, round, got, want)
			}
		}
	}
	if p := proto(report.HijackFloor); p != "ws" {
		t.Errorf("the load generator speaks %q to the hijack floor, want ws", p)
	}
	if p := proto(report.Floor); p != "tcp" {
		t.Errorf("the load generator speaks %q to the TCP floor, want tcp", p)
	}
}
