package harness

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/duplexws/duplex/bench/internal/report"
)

// plan lists every run: per round, per scenario cell, every library, in an
// order shuffled for each cell, so that no library always runs first or
// last, or after the same one.
func (r *runner) plan() []task {
	o := r.opt
	var tasks []task
	has := r.has
	connectEst := func(n int) float64 { return 0.3 + float64(n)/8000 }
	echoEst := (o.Warmup + o.Duration).Seconds() + 0.5
	// Duplex's other modes (the event loop) in an echo-type cell, right
	// after the libraries, their records under the variant scenario.
	echoVariants := func(e echoCell, scenario string) []task {
		if r.libs[report.Ours] == nil || !slices.Contains(o.Libs, report.Ours) {
			return nil
		}
		var out []task
		for _, v := range o.DuplexEchoVariants {
			e := e
			e.scenario, e.lib, e.variant = scenario, report.Ours, v
			out = append(out, task{label: e.String(), est: echoEst + connectEst(e.conns), run: func() []report.Record { return r.echo(e) }})
		}
		return out
	}
	for round := 1; round <= o.Rounds; round++ {
		// Each cell runs the libraries in an order of its own, shuffled
		// from a seed per round so that a plan is the same every time: a
		// fixed order, even rotated, has each library always follow the
		// same one, and so carry the same leftover of it (sockets in
		// TIME_WAIT, the kernel's caches) in every round.
		rng := rand.New(rand.NewPCG(uint64(round), orderSeed))
		order := func() []string {
			libs := slices.Clone(o.Libs)
			rng.Shuffle(len(libs), func(i, j int) { libs[i], libs[j] = libs[j], libs[i] })
			return libs
		}
		if has(report.Echo) {
			for _, c := range o.EchoConns {
				for _, p := range o.Payloads {
					e := echoCell{scenario: report.Echo, round: round, conns: c, payload: p, depth: o.Depth}
					for _, l := range order() {
						e := e
						e.lib = l
						tasks = append(tasks, task{label: e.String(), est: echoEst + connectEst(c), run: func() []report.Record { return r.echo(e) }})
					}
					tasks = append(tasks, echoVariants(e, report.EchoVariant)...)
				}
			}
		}
		if has(report.Pipelined) {
			for _, p := range o.PipelinedPayloads {
				e := echoCell{scenario: report.Pipelined, round: round, conns: o.PipelinedConns, payload: p, depth: o.PipelinedDepth}
				for _, l := range order() {
					e := e
					e.lib = l
					tasks = append(tasks, task{label: e.String(), est: echoEst + connectEst(e.conns), run: func() []report.Record { return r.echo(e) }})
				}
				tasks = append(tasks, echoVariants(e, report.PipelinedVariant)...)
			}
		}
		idleRound := round <= o.IdleRounds
		if has(report.Idle) && idleRound {
			last := o.IdleSteps[len(o.IdleSteps)-1]
			idleEst := 1 + float64(len(o.IdleSteps))*r.settleMin().Seconds()*1.5 + connectEst(last)
			for _, l := range order() {
				l, round := l, round
				tasks = append(tasks, task{
					label: fmt.Sprintf("r%d idle %s up to %d", round, l, last),
					est:   idleEst,
					run:   func() []report.Record { return r.idle(l, round) },
				})
			}
			if r.libs[report.Ours] != nil { // Duplex's other modes: Accept + go, the event loop
				for _, v := range o.DuplexVariants {
					round, v := round, v
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d idle %s up to %d", round, report.Series(report.Ours, v), last),
						est:   idleEst,
						run:   func() []report.Record { return r.idleVariant(report.Ours, round, v) },
					})
				}
			}
			// Beside them, whenever the TCP floor runs, the net/http hijack
			// floor (servers/tcp -variant hijack): the least a server that
			// upgrades through net/http holds, which tells net/http's part
			// of a mode's cost from the library's. One idle run per round.
			if r.libs[report.Floor] != nil && !o.NoHijackFloor {
				round := round
				tasks = append(tasks, task{
					label: fmt.Sprintf("r%d idle %s up to %d", round, report.HijackFloor, last),
					est:   idleEst,
					run:   func() []report.Record { return r.idleVariant(report.Floor, round, report.HijackVariant) },
				})
			}
		}
		if has(report.DeflateIdle) && idleRound {
			last := o.DeflateIdleSteps[len(o.DeflateIdleSteps)-1]
			idleEst := 1 + float64(len(o.DeflateIdleSteps))*r.settleMin().Seconds()*1.5 + connectEst(last)
			for _, l := range order() {
				if l == "tcp" {
					continue
				}
				for _, v := range deflateVariants(l) {
					l, v, round := l, v, round
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d deflate-idle %s up to %d", round, report.Series(l, v), last),
						est:   idleEst,
						run:   func() []report.Record { return r.idleScenario(report.DeflateIdle, l, round, v) },
					})
				}
			}
		}
		if has(report.Broadcast) {
			for _, win := range o.Windows {
				for _, l := range order() {
					l, round, win := l, round, win
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d broadcast %s to %d w=%d", round, l, o.BroadcastSubs, win),
						est:   echoEst + 0.3 + connectEst(o.BroadcastSubs),
						run:   func() []report.Record { return r.broadcast(l, round, win) },
					})
				}
			}
		}
		if has(report.HubBroadcast) {
			for _, win := range o.Windows {
				for _, tg := range rotate(r.hubTargets(), round-1) {
					tg, round, win := tg, round, win
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d hub-broadcast %s to %d w=%d", round, tg, o.BroadcastSubs, win),
						est:   echoEst + 0.8 + 2*connectEst(o.BroadcastSubs),
						run:   func() []report.Record { return r.hubBroadcast(tg, round, win) },
					})
				}
			}
		}
		if has(report.Deflate) {
			for _, p := range o.DeflatePayloads {
				for _, l := range order() {
					if l == "tcp" {
						continue
					}
					for _, v := range deflateVariants(l) {
						e := echoCell{scenario: report.Deflate, lib: l, variant: v, round: round, conns: o.DeflateConns, payload: p, depth: o.Depth}
						tasks = append(tasks, task{label: e.String(), est: echoEst + connectEst(e.conns), run: func() []report.Record { return r.echo(e) }})
					}
				}
			}
		}
	}
	return tasks
}

// deflateVariants are the servers of lib that the deflate scenarios run.
func deflateVariants(lib string) []string {
	if lib == report.Ours {
		return duplexDeflateVariants
	}
	return []string{""}
}

// orderSeed seeds, with the round, the shuffles of the libraries' order.
const orderSeed = 0x6475706c6578

func rotate[T any](s []T, k int) []T {
	out := make([]T, 0, len(s))
	for i := range s {
		out = append(out, s[(i+k)%len(s)])
	}
	return out
}

func size(n int) string { return report.Size(n) }

// proto is the load generator's protocol for a server, a series (a
// library, or a variant of its server: report.Series): the TCP floor's
// length-prefixed messages, WebSocket for every other, the TCP server's
// hijack variant included (it upgrades through net/http).
func proto(series string) string {
	if series == report.Floor {
		return "tcp"
	}
	return "ws"
}
