package report

import (
	"fmt"
	"strings"
)

// variantScenario is the scenario that holds Duplex's server variants
// beside a main echo-type scenario, kept apart from its tables.
var variantScenario = map[string]string{Echo: EchoVariant, Pipelined: PipelinedVariant}

// inScenario is the cell x of scenario as series has it: Duplex's README
// idiom (Open) and the libraries in the main scenario, the variants in its
// variant scenario.
func inScenario(x at, series string) at {
	if vs, ok := variantScenario[x.scenario]; ok && series != Ours {
		x.scenario = vs
	}
	return x
}

// echoModes compares Duplex's modes in an echo-type scenario at one
// connection count: Open (the main tables' duplex column) and each server
// variant that ran beside it (the event loop; Accept + go), with their
// ratios to Open.
func (a *agg) echoModes(b *strings.Builder, scenario string, conns int) {
	variants := a.variants[variantScenario[scenario]]
	rows := a.cellsWith(scenario, conns)
	if len(variants) == 0 || len(rows) == 0 {
		return
	}
	cols := []column{{Ours, "duplex, Open (above)"}}
	for _, v := range variants {
		cols = append(cols, column{v, v})
	}
	table := func(cols []column, render func(at, column) string) *table {
		return grid("payload", rows, payloadHead, cols, columnHead, func(x at, c column) string { return render(inScenario(x, c.series), c) })
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("#### Duplex's modes, %d connections\n\nThe same echo server, served each way (kept out of the tables above, where duplex is Open):\n\n", conns)
	for _, c := range cols[1:] {
		d := modeOf[c.series]
		if d == "" {
			d = "servers/duplex -variant " + strings.TrimSuffix(strings.TrimPrefix(c.series, Ours+" ("), ")")
		}
		w("- **%s**: %s.\n", c.head, d)
	}
	w("\nMessages echoed per second:\n\n%s\n", table(cols, a.values(msgsPerSec, num)))
	w("Server CPU time per message (µs):\n\n%s\n", table(cols, a.values(cpuPerMsg, fixed2)))
	w("Against Open, `msgs/s × · CPU/msg × · p99 ×` (msgs/s above 1 is better, CPU and p99 below 1):\n\n%s\n",
		table(cols[1:], func(x at, c column) string {
			s := a.stat(x, c.series, msgsPerSec)
			if !s.ok() {
				return cell(s, num, false)
			}
			open := at{scenario, x.conns, x.payload}
			return ratio(s.med, a.stat(open, Ours, msgsPerSec).orNaN()) + " · " +
				ratio(a.stat(x, c.series, cpuPerMsg).med, a.stat(open, Ours, cpuPerMsg).orNaN()) + " · " +
				ratio(a.stat(x, c.series, p99).med, a.stat(open, Ours, p99).orNaN())
		}))
}
