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
