package report

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/duplexws/duplex/bench/internal/hubload"
)

// HubNATS is the scenario of the hub on NATS (issue 11): the duplex binary
// with the memory broker and with embedded NATS on 1 and 3 nodes, in one run.
// Not in the default run; results/followup/hub-nats.md.
const HubNATS = "hub-nats"

// HubNATSConfig is one deployment of duplex under test.
type HubNATSConfig struct {
	Name     string `json:"name"`
	Label    string `json:"label"`
	Broker   string `json:"broker"` // -broker
	Nodes    int    `json:"nodes"`
	Replicas int    `json:"replicas"` // -nats-replicas (clusters)
}

// HubNATSConfigs are the deployments, the reference (the memory broker) first.
var HubNATSConfigs = []HubNATSConfig{
	{Name: "memory", Label: "memory broker, 1 node", Broker: "memory", Nodes: 1},
	{Name: "nats-1", Label: "NATS, 1 node (R1, file store)", Broker: "nats", Nodes: 1, Replicas: 1},
	{Name: "nats-3-r1", Label: "NATS, 3 nodes, R1", Broker: "nats", Nodes: 3, Replicas: 1},
	{Name: "nats-3-r3", Label: "NATS, 3 nodes, R3", Broker: "nats", Nodes: 3, Replicas: 3},
}

// HubNATSRun is one configuration in one round.
type HubNATSRun struct {
	Config       string         `json:"config"`
	Round        int            `json:"round"`
	Err          string         `json:"error,omitempty"`
	StartSeconds float64        `json:"start_seconds"`     // from starting the nodes until all listened
	NodesCPU     float64        `json:"nodes_cpu_seconds"` // latency window: the nodes' CPU time, all together
	LoadCPU      float64        `json:"load_cpu_seconds"`  // latency window: the load generator's
	Wall         float64        `json:"wall_seconds"`      // latency window
	Load         hubload.Result `json:"load"`
}

// HubNATSResults is everything a hub-nats run produced.
type HubNATSResults struct {
	Machine   Machine        `json:"machine"`
	Command   string         `json:"command"`
	Duplex    string         `json:"duplex"` // the commit the binary was built from
	Rounds    int            `json:"rounds"`
	ServerCPU string         `json:"server_cpu"`
	LoadCPU   string         `json:"load_cpu"`
	Load      hubload.Config `json:"load"`
	Runs      []HubNATSRun   `json:"runs"`
	Profiles  []string       `json:"profiles,omitempty"`
	Started   time.Time      `json:"started"`
	Finished  time.Time      `json:"finished"`
}

// WriteHubNATS writes hub-nats.json, hub-nats.md, hub-nats.png (latency) and
// hub-nats-throughput.png into dir.
func WriteHubNATS(res *HubNATSResults, dir string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, HubNATS+".json"), b, 0o644); err != nil {
		return err
	}
	for name, p := range map[string]*plot.Plot{HubNATS + ".png": hubNATSLatencyPlot(res), HubNATS + "-throughput.png": hubNATSThroughputPlot(res)} {
		if err := p.Save(8*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, HubNATS+".md"), []byte(hubNATSMarkdown(res)), 0o644)
}

// hubNATSStat is the median, min and max of one figure over the rounds.
func hubNATSStat(res *HubNATSResults, config string, f func(HubNATSRun) float64) stat {
	var v []float64
	for _, r := range res.Runs {
		if r.Config == config && r.Err == "" {
			v = append(v, f(r))
		}
	}
	if len(v) == 0 {
		return stat{}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{med: med, min: v[0], max: v[len(v)-1], n: len(v)}
}

// hubNATSCell is a figure's median (min–max) and its ratio to the memory broker's.
func hubNATSCell(res *HubNATSResults, config string, f func(HubNATSRun) float64, format func(float64) string) (string, string) {
	s := hubNATSStat(res, config, f)
	if !s.ok() {
		return "–", "–"
	}
	ref := hubNATSStat(res, HubNATSConfigs[0].Name, f)
	r := "–"
	if ref.ok() && ref.med > 0 {
		r = fmt.Sprintf("%.2f×", s.med/ref.med)
	}
	return cell(s, format, res.Rounds > 1), r
}

func ms(us float64) string { return fmt.Sprintf("%.2f ms", us/1e3) }

func perSec(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// lagOn is the lag of the deliveries to node A's subscribers (other false)
// or to the other nodes' (other true; for one node, none).
func lagOn(r HubNATSRun, other bool, q func(hubload.Lat) float64) float64 {
	by := r.Load.LagByNode
	if !other {
		if len(by) == 0 {
			return 0
		}
		return q(by[0])
	}
	best := 0.0
	for _, l := range by[min(1, len(by)):] {
		best = max(best, q(l)) // the worse of B and C
	}
	return best
}

func hubNATSMarkdown(res *HubNATSResults) string {
	var b strings.Builder
	l := res.Load
	m := res.Machine
	fmt.Fprintf(&b, "# The hub on NATS: publish-to-deliver latency and throughput (issue 11)\n\n")
	fmt.Fprintf(&b, "```sh\ncd bench && %s\n```\n\n", res.Command)
	fmt.Fprintf(&b, "%s – %s UTC, %d round(s), the configurations interleaved (order rotated each round). duplex built from %s.\n\n",
		res.Started.UTC().Format("2006-01-02 15:04"), res.Finished.UTC().Format("15:04"), res.Rounds, res.Duplex)
	fmt.Fprintf(&b, "**Machine:** %d cores (%s), %s, Linux %s, %s; load average %s at the start, %s at the end (other engineers' work shares the cores).\n",
		m.Cores, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.LoadStart, m.LoadEnd)
	fmt.Fprintf(&b, "Every duplex node pinned to CPU %s with GOMAXPROCS=1, so the three nodes of a cluster share what the one node has alone; "+
		"the load generator (`bench hubload`, a goroutine per connection) pinned to CPU %s with GOMAXPROCS=1.\n\n", res.ServerCPU, res.LoadCPU)
	b.WriteString("## What runs\n\n")
	b.WriteString("The real `duplex` binary (cmd/duplex), its hub at `/chat/hub`, in separate processes on loopback:\n\n")
	for _, c := range HubNATSConfigs {
		args := "-broker " + c.Broker
		if c.Broker == "nats" {
			args += " -data-dir DIR"
		}
		if c.Nodes > 1 {
			args += fmt.Sprintf(" -nats-cluster -nats-routes (3 routes) -nats-replicas %d", c.Replicas)
		}
		fmt.Fprintf(&b, "- **%s** (`%s`): `%s`\n", c.Name, c.Label, args)
	}
	fmt.Fprintf(&b, "\nLoad, the same for each: %d subscribers of room `fan` spread round-robin over the nodes (node A, B, C), one subscriber of room "+
		"`solo` per node, and %d publisher connections on node A (the hub allows each 50 publishes/s). Each publish is the protocol's "+
		"`publish` with a `key` and a %d-byte data string stamped with its intended send time (open loop: a publisher that falls behind "+
		"shows as lag). Lag is receive time minus that stamp; ack is the publish's reply time minus it.\n\n", l.Subs, l.Publishers, l.Payload)
	fmt.Fprintf(&b, "- **Latency:** %.0f publishes/s to `fan` (%s deliveries/s), %v warm-up, %v measured; every delivery's lag, to A's subscribers and to the others'.\n",
		l.Rate, perSec(l.Rate*float64(l.Subs)), l.Warmup, l.Duration)
	fmt.Fprintf(&b, "- **Throughput:** steps of %v at a fixed rate, from %.0f/s (`solo`) and %.0f/s (`fan`), ×%.1f each step, at most %d steps per room; "+
		"a step is **sustained** when every publish is acknowledged, every subscriber has every message of the step within %v after it, "+
		"the lag p99 stays under 500 ms and no connection is lost. The figure is the highest sustained rate (so within ×%.1f of the real limit); "+
		"the top step is %s (`solo`), %s (`fan`): a configuration shown at it sustained every step, and its limit is higher.\n\n",
		l.StepDuration, l.SoloStart, l.FanStart, l.StepFactor, l.MaxSteps, l.Grace, l.StepFactor,
		perSec(topStep(l.SoloStart, l.StepFactor, l.MaxSteps)), perSec(topStep(l.FanStart, l.StepFactor, l.MaxSteps)))

	b.WriteString("## Latency at a fixed rate\n\n")
	fmt.Fprintf(&b, "Medians over the rounds (min–max); ×: the ratio to the memory broker in the same run.\n\n")
	t := &table{head: []string{"configuration", "lag p50", "×", "lag p90", "lag p99", "×", "lag max", "A: p50 / p99", "B, C (worse): p50 / p99",
		"ack p50", "×", "ack p99", "nodes CPU µs/delivery", "×", "delivered"}}
	for _, c := range HubNATSConfigs {
		row := []string{c.Label}
		add := func(f func(HubNATSRun) float64, format func(float64) string, withRatio bool) {
			v, r := hubNATSCell(res, c.Name, f, format)
			row = append(row, v)
			if withRatio {
				row = append(row, r)
			}
		}
		add(func(r HubNATSRun) float64 { return r.Load.Lag.P50 }, ms, true)
		add(func(r HubNATSRun) float64 { return r.Load.Lag.P90 }, ms, false)
		add(func(r HubNATSRun) float64 { return r.Load.Lag.P99 }, ms, true)
		add(func(r HubNATSRun) float64 { return r.Load.Lag.Max }, ms, false)
		a50 := hubNATSStat(res, c.Name, func(r HubNATSRun) float64 { return lagOn(r, false, func(l hubload.Lat) float64 { return l.P50 }) })
		a99 := hubNATSStat(res, c.Name, func(r HubNATSRun) float64 { return lagOn(r, false, func(l hubload.Lat) float64 { return l.P99 }) })
		row = append(row, pair(a50, a99))
		if c.Nodes > 1 {
			o50 := hubNATSStat(res, c.Name, func(r HubNATSRun) float64 { return lagOn(r, true, func(l hubload.Lat) float64 { return l.P50 }) })
			o99 := hubNATSStat(res, c.Name, func(r HubNATSRun) float64 { return lagOn(r, true, func(l hubload.Lat) float64 { return l.P99 }) })
			row = append(row, pair(o50, o99))
		} else {
			row = append(row, "(one node)")
		}
		add(func(r HubNATSRun) float64 { return r.Load.Ack.P50 }, ms, true)
		add(func(r HubNATSRun) float64 { return r.Load.Ack.P99 }, ms, false)
		add(func(r HubNATSRun) float64 {
			if r.Load.Delivered == 0 {
				return 0
			}
			return r.NodesCPU / float64(r.Load.Delivered) * 1e6
		}, func(v float64) string { return fmt.Sprintf("%.1f", v) }, true)
		var dl []string
		for _, r := range res.Runs {
			if r.Config == c.Name && r.Err == "" {
				dl = append(dl, fmt.Sprintf("%d/%d", r.Load.Delivered, r.Load.Want))
			}
		}
		row = append(row, strings.Join(dl, ", "))
		t.rows = append(t.rows, row)
	}
	b.WriteString(t.String())
	b.WriteString("\n![lag p50 (inner bar) and p99, and publish ack p50](hub-nats.png)\n\n")

	b.WriteString("## Throughput\n\n")
	t = &table{head: []string{"configuration", "fan: highest sustained publishes/s", "×", "deliveries/s at it", "×",
		"solo: highest sustained publishes/s", "×", "nodes CPU µs/publish at solo's highest", "×"}}
	for _, c := range HubNATSConfigs {
		row := []string{c.Label}
		add := func(f func(HubNATSRun) float64, format func(float64) string) {
			v, r := hubNATSCell(res, c.Name, f, format)
			row = append(row, v, r)
		}
		add(func(r HubNATSRun) float64 { return r.Load.MaxFanRate }, perSec)
		add(func(r HubNATSRun) float64 { return r.Load.MaxFanRate * float64(res.Load.Subs) }, perSec)
		add(func(r HubNATSRun) float64 { return r.Load.MaxSoloRate }, perSec)
		add(func(r HubNATSRun) float64 {
			st := highest(r, hubload.SoloRoom)
			if st == nil || st.Published == 0 {
				return 0
			}
			return st.NodesCPU / float64(st.Published) * 1e6
		}, func(v float64) string { return fmt.Sprintf("%.0f", v) })
		t.rows = append(t.rows, row)
	}
	b.WriteString(t.String())
	b.WriteString("\n![highest sustained publish rate per room](hub-nats-throughput.png)\n\n")
	b.WriteString("Each run's steps (rate: ✓ sustained, ✗ not, with why; lag p99 of the step):\n\n")
	for _, r := range res.Runs {
		if r.Err != "" {
			fmt.Fprintf(&b, "- r%d %s: **failed**: %s\n", r.Round, r.Config, r.Err)
			continue
		}
		fmt.Fprintf(&b, "- r%d %s (nodes up in %.1f s, subscribers seated in %.1f s):", r.Round, r.Config, r.StartSeconds, r.Load.SetupSecs)
		room := ""
		for _, st := range r.Load.Steps {
			if st.Room != room {
				room = st.Room
				fmt.Fprintf(&b, " **%s**", room)
			}
			if st.Sustained {
				fmt.Fprintf(&b, " %.0f ✓ (%s)", st.Rate, ms(st.Lag.P99))
			} else {
				fmt.Fprintf(&b, " %.0f ✗ (%s)", st.Rate, st.Why)
			}
		}
		if r.Load.FirstErr != "" {
			fmt.Fprintf(&b, "; first error: %s", r.Load.FirstErr)
		}
		b.WriteString("\n")
	}
	if len(res.Profiles) > 0 {
		b.WriteString("\nProfiles (perf, every node of the configuration, during the latency window of an extra run): ")
		for i, p := range res.Profiles {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "`%s`", p)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func pair(a, b stat) string {
	if !a.ok() || !b.ok() {
		return "–"
	}
	return ms(a.med) + " / " + ms(b.med)
}

// highest is the step of room at the run's highest sustained rate.
func highest(r HubNATSRun, room string) *hubload.Step {
	var out *hubload.Step
	for i, st := range r.Load.Steps {
		if st.Room == room && st.Sustained {
			out = &r.Load.Steps[i]
		}
	}
	return out
}

var hubNATSColors = []color.RGBA{
	{0x7f, 0x7f, 0x7f, 0xff}, // memory: the reference, grey
	{0x1f, 0x4e, 0xd8, 0xff},
	{0x17, 0xa5, 0xb5, 0xff},
	{0xd6, 0x27, 0x28, 0xff},
}

// hubNATSBars is a bar chart with one group per label and one bar per
// configuration, values[config][group] in the given unit.
func hubNATSBars(title, ylabel string, groups []string, values func(c HubNATSConfig, group int) float64) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	w := vg.Points(20)
	top := 0.0
	for i, c := range HubNATSConfigs {
		vals := make(plotter.Values, len(groups))
		for g := range groups {
			vals[g] = values(c, g)
			top = max(top, vals[g])
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			continue
		}
		bars.Color = hubNATSColors[i%len(hubNATSColors)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-float64(len(HubNATSConfigs)-1)/2) * w
		p.Add(bars)
		p.Legend.Add(c.Label, bars)
	}
	p.NominalX(groups...)
	p.X.Min, p.X.Max = -0.6, float64(len(groups))-0.4
	p.Y.Min, p.Y.Max = 0, max(top*1.4, 1)
	p.Add(plotter.NewGrid())
	return p
}

func hubNATSLatencyPlot(res *HubNATSResults) *plot.Plot {
	figs := []func(HubNATSRun) float64{
		func(r HubNATSRun) float64 { return r.Load.Lag.P50 },
		func(r HubNATSRun) float64 { return r.Load.Lag.P99 },
		func(r HubNATSRun) float64 { return r.Load.Ack.P50 },
		func(r HubNATSRun) float64 { return r.Load.Ack.P99 },
	}
	return hubNATSBars(fmt.Sprintf("Hub on NATS: %.0f publishes/s to %d subscribers (medians)", res.Load.Rate, res.Load.Subs), "ms (lower is better)",
		[]string{"lag p50", "lag p99", "publish ack p50", "publish ack p99"},
		func(c HubNATSConfig, g int) float64 { return hubNATSStat(res, c.Name, figs[g]).med / 1e3 })
}

func hubNATSThroughputPlot(res *HubNATSResults) *plot.Plot {
	figs := []func(HubNATSRun) float64{
		func(r HubNATSRun) float64 { return r.Load.MaxFanRate },
		func(r HubNATSRun) float64 { return r.Load.MaxSoloRate },
	}
	return hubNATSBars("Hub on NATS: highest sustained publish rate (medians)", "publishes/s (higher is better)",
		[]string{fmt.Sprintf("fan (%d subscribers)", res.Load.Subs), "solo (1 subscriber per node)"},
		func(c HubNATSConfig, g int) float64 { return hubNATSStat(res, c.Name, figs[g]).med })
}

// topStep is the rate of the ladder's last step, rounded at each step as
// the load generator does.
func topStep(start, factor float64, steps int) float64 {
	rate := start
	for range steps - 1 {
		rate = math.Round(rate * factor)
	}
	return rate
}
