package report

import (
	"fmt"
	"image/color"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// palette gives each library the same colour in every plot; duplex is the
// strong blue, the floor grey.
var palette = map[string]color.RGBA{
	"duplex":  {0x1f, 0x4e, 0xd8, 0xff},
	"gorilla": {0xe3, 0x6c, 0x0a, 0xff},
	"coder":   {0x2c, 0xa0, 0x2c, 0xff},
	"gws":     {0xd6, 0x27, 0x28, 0xff},
	"gobwas":  {0x94, 0x67, 0xbd, 0xff},
	"nbio":    {0x8c, 0x56, 0x4b, 0xff},
	"tcp":     {0x7f, 0x7f, 0x7f, 0xff},
	"hub":     {0x17, 0xa5, 0xb5, 0xff},
}

// colorOf is a series' colour: its library's, lighter for a variant of its
// server.
func colorOf(series string) color.Color {
	lib, variant, _ := strings.Cut(series, " (")
	c, ok := palette[lib]
	if !ok {
		return color.Black
	}
	if variant != "" {
		c.R, c.G, c.B = c.R/2+0x7f, c.G/2+0x7f, c.B/2+0x7f
	}
	return c
}

// variantDashes tell apart the curves of a library's server variants,
// which share its (lighter) colour.
var variantDashes = [][]vg.Length{
	{vg.Points(6), vg.Points(3)},
	{vg.Points(2), vg.Points(2)},
	{vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)},
}

// plots draws every figure it has data for and returns name -> file name.
func (a *agg) plots(dir string) (map[string]string, error) {
	out := map[string]string{}
	save := func(name string, p *plot.Plot, w vg.Length) error {
		file := name + ".png"
		if err := p.Save(w, 4*vg.Inch, filepath.Join(dir, file)); err != nil {
			return err
		}
		out[name] = file
		return nil
	}
	for _, c := range a.conns(Echo) {
		p, ok := a.grouped(Echo, c, msgsPerSec, fmt.Sprintf("Echo, %d connections: msgs/s relative to the TCP floor", c), "msgs/s ÷ TCP floor (higher is better)", a.sameCellFloor(msgsPerSec))
		if ok {
			if err := save(fmt.Sprintf("echo-c%d", c), p, 9*vg.Inch); err != nil {
				return nil, err
			}
		}
		p, ok = a.grouped(Echo, c, cpuPerMsg, fmt.Sprintf("Echo, %d connections: server CPU per message", c), "µs of server CPU per message (lower is better)", nil)
		if ok {
			if err := save(fmt.Sprintf("cpu-c%d", c), p, 9*vg.Inch); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range a.conns(Pipelined) {
		p, ok := a.grouped(Pipelined, c, msgsPerSec, fmt.Sprintf("Pipelined echo (%d in flight), %d connections: msgs/s relative to the TCP floor with one in flight", a.pipelinedDepth(), c),
			"msgs/s ÷ TCP floor at 1 in flight (higher is better)", a.oneInFlightFloor(msgsPerSec))
		if ok {
			if err := save(fmt.Sprintf("pipelined-c%d", c), p, 9*vg.Inch); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range a.conns(Deflate) {
		p, ok := a.grouped(Deflate, c, msgsPerSec, fmt.Sprintf("Echo with permessage-deflate, %d connections", c), "msgs/s (higher is better)", nil)
		if ok {
			if err := save("deflate", p, 7*vg.Inch); err != nil {
				return nil, err
			}
		}
	}
	if p, ok := a.idlePlot(); ok {
		if err := save("idle", p, 7*vg.Inch); err != nil {
			return nil, err
		}
	}
	for _, c := range a.cells(Broadcast) {
		if p, ok := a.broadcastPlot(c); ok {
			if err := save(fmt.Sprintf("broadcast-w%d", c.payload%1000), p, 7*vg.Inch); err != nil {
				return nil, err
			}
		}
	}
	if cs := a.cells(HubBroadcast); len(cs) > 0 {
		subs := cs[0].conns
		for _, x := range []struct {
			name, title, ylabel string
			f                   func(Record) float64
		}{
			{"hub-broadcast", fmt.Sprintf("Broadcast to %d subscribers through the hub: deliveries/s", subs), "deliveries/s (higher is better)", deliveries},
			{"hub-broadcast-lag", fmt.Sprintf("Broadcast to %d subscribers through the hub: delivery lag p50 and p99", subs), "ms (lower is better)", nil},
		} {
			if p, ok := a.hubPlot(subs, x.title, x.ylabel, x.f); ok {
				if err := save(x.name, p, 7*vg.Inch); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// hubPlot is a bar chart of the hub-broadcast scenario: one group per
// window, one bar per server, f's medians; with f nil, the lag: p99 as the
// bar and p50 as a darker bar inside it.
func (a *agg) hubPlot(subs int, title, ylabel string, f func(Record) float64) (*plot.Plot, bool) {
	var keys []int
	for _, c := range a.cellsWith(HubBroadcast, subs) {
		keys = append(keys, c.payload)
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	w := vg.Points(22)
	any := false
	top := 0.0
	for i, tg := range hubTargets {
		value := func(f func(Record) float64, scale float64) (plotter.Values, bool) {
			vals := make(plotter.Values, len(keys))
			got := false
			for j, k := range keys {
				if s := a.stat(at{HubBroadcast, subs, k}, tg.series, f); s.ok() {
					vals[j] = s.med * scale
					top = max(top, vals[j])
					got = true
				}
			}
			return vals, got
		}
		offset := vg.Length(float64(i)-float64(len(hubTargets)-1)/2) * w
		main, scale := f, 1.0
		if f == nil {
			main, scale = p99, 1e-3
		}
		vals, got := value(main, scale)
		if !got {
			continue
		}
		any = true
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, false
		}
		bars.Color = colorOf(tg.series)
		bars.LineStyle.Width = 0
		bars.Offset = offset
		p.Add(bars)
		p.Legend.Add(tg.head, bars)
		if f == nil { // p50 inside the p99 bar
			v50, _ := value(p50, 1e-3)
			inner, err := plotter.NewBarChart(v50, w/2)
			if err != nil {
				return nil, false
			}
			inner.Color = color.RGBA{0, 0, 0, 0x80}
			inner.LineStyle.Width = 0
			inner.Offset = offset
			p.Add(inner)
			if i == len(hubTargets)-1 {
				p.Legend.Add("p50 (inner bar)", inner)
			}
		}
	}
	labels := make([]string, len(keys))
	for j, k := range keys {
		labels[j] = fmt.Sprintf("%s, W=%d", Size(k/1000), k%1000)
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.6, float64(len(keys))-0.4
	p.Y.Min, p.Y.Max = 0, top*1.35 // room for the legend
	p.Add(plotter.NewGrid())
	return p, any
}

// grouped is a bar chart: one group per payload, one bar per library (and
// per variant in deflate). With floor, each bar is divided by the floor's
// value in its group.
func (a *agg) grouped(scenario string, conns int, f metric, title, ylabel string, floor func(at) stat) (*plot.Plot, bool) {
	var payloads []int
	for _, c := range a.cellsWith(scenario, conns) {
		payloads = append(payloads, c.payload)
	}
	if len(payloads) == 0 {
		return nil, false
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	var libs []string
	for _, c := range a.columns(scenario, scenario == Deflate) {
		libs = append(libs, c.series)
	}
	w := vg.Points(11)
	any := false
	top := 0.0
	for i, l := range libs {
		vals := make(plotter.Values, len(payloads))
		for j, pl := range payloads {
			s := a.stat(at{scenario, conns, pl}, l, f)
			if !s.ok() {
				continue
			}
			vals[j] = s.med
			if floor != nil {
				fl := floor(at{scenario, conns, pl})
				if !fl.ok() || fl.med == 0 {
					vals[j] = 0
					continue
				}
				vals[j] = s.med / fl.med
			}
			top = max(top, vals[j])
			any = true
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, false
		}
		bars.Color = colorOf(l)
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-float64(len(libs)-1)/2) * w
		p.Add(bars)
		p.Legend.Add(l, bars)
	}
	labels := make([]string, len(payloads))
	for j, pl := range payloads {
		labels[j] = Size(pl)
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.6, float64(len(payloads))-0.4
	p.Y.Min, p.Y.Max = 0, top*1.3 // room for the legend
	p.Add(plotter.NewGrid())
	return p, any
}

func (a *agg) idlePlot() (*plot.Plot, bool) {
	cs := a.cells(Idle)
	if len(cs) == 0 {
		return nil, false
	}
	p := plot.New()
	p.Title.Text = "Server memory per idle connection"
	p.X.Label.Text = "connections"
	p.Y.Label.Text = "KiB of RSS per connection (lower is better)"
	p.Legend.Top = true
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	any := false
	top := 0.0
	var ticks []plot.Tick
	for _, c := range cs {
		ticks = append(ticks, plot.Tick{Value: float64(c.conns), Label: fmt.Sprint(c.conns)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	// The libraries, then Duplex's other modes and the net/http hijack
	// floor (IdleVariant), dashed.
	series := append(append([]string{}, a.libs...), a.variants[IdleVariant]...)
	for _, l := range series {
		scenario := Idle
		if !slices.Contains(a.libs, l) {
			scenario = IdleVariant
		}
		var xys plotter.XYs
		for _, c := range a.cells(scenario) {
			s := a.stat(c, l, perConn)
			if s.ok() {
				xys = append(xys, plotter.XY{X: float64(c.conns), Y: s.med / 1024})
				top = max(top, s.med/1024)
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, false
		}
		line.Color = colorOf(l)
		line.Width = vg.Points(1.5)
		if scenario == IdleVariant { // one dash pattern per mode
			line.Dashes = variantDashes[slices.Index(a.variants[IdleVariant], l)%len(variantDashes)]
		}
		points.Color = colorOf(l)
		p.Add(line, points)
		name := l
		if l == HijackFloor {
			name = hijackFloorHead
		}
		p.Legend.Add(name, line, points)
		any = true
	}
	p.Y.Max = top * 1.45 // room for the legend
	return p, any
}

func (a *agg) broadcastPlot(c at) (*plot.Plot, bool) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Broadcast to %d subscribers, %s messages, %d in flight", c.conns, Size(c.payload/1000), c.payload%1000)
	p.Y.Label.Text = "deliveries/s (higher is better)"
	p.Add(plotter.NewGrid())
	var names []string
	w := vg.Points(28)
	any := false
	top := 0.0
	for i, l := range a.libs {
		s := a.stat(c, l, deliveries)
		vals := make(plotter.Values, len(a.libs))
		if s.ok() {
			vals[i] = s.med
			top = max(top, s.med)
			any = true
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, false
		}
		bars.Color = colorOf(l)
		bars.LineStyle.Width = 0
		p.Add(bars)
		names = append(names, l)
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, top*1.1
	return p, any
}
