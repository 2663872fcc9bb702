package soak

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Summary is the run in a few figures.
type Summary struct {
	RSSBaselineMiB   float64 `json:"rss_baseline_mib"`   // before the first connection
	RSSHoldStartMiB  float64 `json:"rss_hold_start_mib"` // when all connections were open
	RSSHoldMedianMiB float64 `json:"rss_hold_median_mib"`
	RSSHoldEndMiB    float64 `json:"rss_hold_end_mib"`
	RSSHoldMaxMiB    float64 `json:"rss_hold_max_mib"`
	RSSAfterMiB      float64 `json:"rss_after_mib"` // the last sample, connections closed
	HeapAfterMiB     float64 `json:"heap_after_mib"`
	RSSPerConnKiB    float64 `json:"rss_per_conn_kib"` // (hold median - baseline) / connections

	GoroutinesBaseline  float64 `json:"goroutines_baseline"`
	GoroutinesHoldStart float64 `json:"goroutines_hold_start"`
	GoroutinesHoldEnd   float64 `json:"goroutines_hold_end"`
	GoroutinesHoldMax   float64 `json:"goroutines_hold_max"`
	GoroutinesAfter     float64 `json:"goroutines_after"`

	GCsDuringHold  float64 `json:"gcs_during_hold"`
	GCsInAll       float64 `json:"gcs_in_all"`
	GCPauseP50Ms   float64 `json:"gc_pause_p50_ms"` // of the last (up to 256) pauses at the end of the hold
	GCPauseMaxMs   float64 `json:"gc_pause_max_ms"` // the largest seen in any sample
	ServerCPUHoldS float64 `json:"server_cpu_hold_s"`
	HoldSeconds    float64 `json:"hold_s"`

	Sent, Echoed, Bad, SendErrors, DialErrors int64
	ServerMsgsIn, ServerMsgsOut               float64
	Ends                                      map[string]int64 // how the load's connections ended
	RTTp50MedianMs, RTTp99MaxMs               float64
}

func summarize(r *Result) Summary {
	var s Summary
	var hold, rssHold []Sample
	for _, sm := range r.Samples {
		if sm.Phase == PhaseHold {
			hold = append(hold, sm)
		}
	}
	first, last := r.Samples[0], r.Samples[len(r.Samples)-1]
	mib := func(b float64) float64 { return b / (1 << 20) }
	s.RSSBaselineMiB, s.GoroutinesBaseline = mib(first.RSSBytes), first.Goroutines
	s.RSSAfterMiB, s.GoroutinesAfter = mib(last.RSSBytes), last.Goroutines
	s.GCsInAll = last.GCCount
	s.HeapAfterMiB = mib(last.HeapInuseBytes)
	var rtt50 []float64
	if len(hold) > 0 {
		h0, h1 := hold[0], hold[len(hold)-1]
		s.RSSHoldStartMiB, s.RSSHoldEndMiB = mib(h0.RSSBytes), mib(h1.RSSBytes)
		s.GoroutinesHoldStart, s.GoroutinesHoldEnd = h0.Goroutines, h1.Goroutines
		s.GCsDuringHold = h1.GCCount - h0.GCCount
		s.GCPauseP50Ms = h1.GCPauseP50Ms
		s.ServerCPUHoldS = h1.CPUSeconds - h0.CPUSeconds
		s.HoldSeconds = h1.T - h0.T
		rssHold = slices.Clone(hold)
		sort.Slice(rssHold, func(i, j int) bool { return rssHold[i].RSSBytes < rssHold[j].RSSBytes })
		s.RSSHoldMedianMiB = mib(rssHold[len(rssHold)/2].RSSBytes)
		s.RSSHoldMaxMiB = mib(rssHold[len(rssHold)-1].RSSBytes)
		s.RSSPerConnKiB = (s.RSSHoldMedianMiB - s.RSSBaselineMiB) * 1024 / float64(r.Config.Load.Conns)
		for _, sm := range hold {
			s.GoroutinesHoldMax = max(s.GoroutinesHoldMax, sm.Goroutines)
			if sm.Load.Echoed > 0 && sm.Load.RTTp50Ms > 0 {
				rtt50 = append(rtt50, sm.Load.RTTp50Ms)
			}
			s.RTTp99MaxMs = max(s.RTTp99MaxMs, sm.Load.RTTp99Ms)
		}
	}
	if len(rtt50) > 0 {
		slices.Sort(rtt50)
		s.RTTp50MedianMs = rtt50[len(rtt50)/2]
	}
	for _, sm := range r.Samples {
		s.GCPauseMaxMs = max(s.GCPauseMaxMs, sm.GCPauseMaxMs)
	}
	f := r.Final
	s.Sent, s.Echoed, s.Bad, s.SendErrors, s.DialErrors, s.Ends = f.Sent, f.Echoed, f.Bad, f.SendErrors, f.DialErrors, f.Ends
	s.ServerMsgsIn, s.ServerMsgsOut = last.MsgsIn, last.MsgsOut
	return s
}

// write writes dir/name.json, dir/name.md and dir/name.png.
func write(r *Result, dir, name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := plotSamples(r, filepath.Join(dir, name+".png")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".md"), []byte(markdown(r, name)), 0o644)
}

func markdown(r *Result, name string) string {
	s, c := r.Summary, r.Config
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Soak: %d connections with keepalive and a trickle of messages", c.Load.Conns)
	w("")
	w("`%s` — %s, %d cores, %s, load average %s at the start. Other work on the machine shows in the CPU",
		r.Command, r.Date, r.Cores, r.GoVersion, r.LoadAvg)
	w("figures, round trips and GC pauses; memory, goroutines and GC counts do not depend on it.")
	w("")
	w("Server: the real `duplex` binary (`%s`), its echo endpoint `/chat/connect`, keepalive pings every 30 s", r.Server)
	w("(the binary's fixed interval), GOMAXPROCS = cores, not pinned. Load: a separate process (`soak load`), one")
	w("`websocket.Conn` per connection (pongs answered by its reading goroutine), opened at %d/s, each sending a", c.Load.Rate)
	w("~45-byte JSON chat message every %s–%s (random phase and pause). Held %.0f s once all were open, then",
		c.Load.MinInterval, c.Load.MaxInterval, s.HoldSeconds)
	w("closed with 1000 and the server watched for %s more. Sampled from the server's `/metrics` every %s.", c.After, c.Sample)
	w("")
	w("![RSS, goroutines and GC pauses over time](%s.png)", name)
	w("")
	w("| | baseline | all open | hold median | hold max | end of hold | after close |")
	w("|---|---|---|---|---|---|---|")
	w("| RSS (MiB) | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |", s.RSSBaselineMiB, s.RSSHoldStartMiB, s.RSSHoldMedianMiB, s.RSSHoldMaxMiB, s.RSSHoldEndMiB, s.RSSAfterMiB)
	w("| goroutines | %.0f | %.0f | | %.0f | %.0f | %.0f |", s.GoroutinesBaseline, s.GoroutinesHoldStart, s.GoroutinesHoldMax, s.GoroutinesHoldEnd, s.GoroutinesAfter)
	w("")
	w("RSS per connection (hold median minus baseline, over %d connections): %.1f KiB. Heap in use at the end: %.1f MiB.",
		c.Load.Conns, s.RSSPerConnKiB, s.HeapAfterMiB)
	w("Memory comes back only after a GC: once the connections are closed nothing allocates, so the next cycle is the")
	w("runtime's forced one (every 2 minutes); watch longer than that (-after) to see it.")
	w("")
	w("- GC: %.0f cycles during the %.0f s hold (%.0f in all); stop-the-world pause p50 %.3f ms (last ≤256 pauses at the",
		s.GCsDuringHold, s.HoldSeconds, s.GCsInAll, s.GCPauseP50Ms)
	w("  end of the hold), max %.3f ms (largest in any sample, ramp and close included).", s.GCPauseMaxMs)
	w("- Server CPU during the hold: %.1f s in %.0f s (%.1f%% of one core).", s.ServerCPUHoldS, s.HoldSeconds, 100*s.ServerCPUHoldS/max(s.HoldSeconds, 1))
	w("- Messages: %d sent, %d echoed back correctly, %d wrong replies, %d send errors; the server counted %.0f in, %.0f out.",
		s.Sent, s.Echoed, s.Bad, s.SendErrors, s.ServerMsgsIn, s.ServerMsgsOut)
	w("- Echo round trip: median of the per-sample p50s %.2f ms, largest per-sample p99 %.1f ms.", s.RTTp50MedianMs, s.RTTp99MaxMs)
	w("- Connections: %d dial errors; how they ended (close code seen by the client, or error): %v.", s.DialErrors, s.Ends)
	w("")
	w("Raw samples: `%s.json`. Rerun: `cd bench && go run ./cmd/soak` (`-h` for the knobs).", name)
	return b.String()
}

// plotSamples draws three panels over time: RSS, goroutines (with open
// connections), GC pauses.
func plotSamples(r *Result, file string) error {
	series := func(f func(Sample) float64) plotter.XYs {
		xy := make(plotter.XYs, len(r.Samples))
		for i, sm := range r.Samples {
			xy[i].X, xy[i].Y = sm.T, f(sm)
		}
		return xy
	}
	blue, orange, grey := color.RGBA{0x1f, 0x4e, 0xd8, 0xff}, color.RGBA{0xe3, 0x6c, 0x0a, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff}
	panel := func(title, ylabel string, lines ...any) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "seconds since the server started"
		p.Y.Label.Text = ylabel
		p.Y.Min = 0
		p.Legend.Top = true
		for i := 0; i < len(lines); i += 3 {
			l, err := plotter.NewLine(lines[i+1].(plotter.XYs))
			if err != nil {
				return nil, err
			}
			l.Color = lines[i+2].(color.Color)
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(lines[i].(string), l)
		}
		phaseMarks(p, r.Samples)
		return p, nil
	}
	n := r.Config.Load.Conns
	rss, err := panel(fmt.Sprintf("duplex server, %d connections, keepalive 30 s: memory", n), "MiB",
		"RSS", series(func(s Sample) float64 { return s.RSSBytes / (1 << 20) }), color.Color(blue),
		"heap in use", series(func(s Sample) float64 { return s.HeapInuseBytes / (1 << 20) }), color.Color(orange))
	if err != nil {
		return err
	}
	gor, err := panel("goroutines and open connections", "count",
		"goroutines", series(func(s Sample) float64 { return s.Goroutines }), color.Color(blue),
		"connections", series(func(s Sample) float64 { return s.Connections }), color.Color(grey))
	if err != nil {
		return err
	}
	gc, err := panel("GC stop-the-world pauses", "ms",
		"max of the last ≤256", series(func(s Sample) float64 { return s.GCPauseMaxMs }), color.Color(blue),
		"p50 of the last ≤256", series(func(s Sample) float64 { return s.GCPauseP50Ms }), color.Color(orange),
		"mean since the previous sample", series(func(s Sample) float64 { return s.GCPauseMeanMs }), color.Color(grey))
	if err != nil {
		return err
	}
	const w, h = 9 * vg.Inch, 10 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadY: vg.Points(12), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12)}
	plots := [][]*plot.Plot{{rss}, {gor}, {gc}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phaseMarks labels where the hold starts and where the connections close,
// as light vertical lines.
func phaseMarks(p *plot.Plot, samples []Sample) {
	prev := ""
	for _, sm := range samples {
		if sm.Phase != prev && (sm.Phase == PhaseHold || sm.Phase == PhaseAfter) {
			l, err := plotter.NewLine(plotter.XYs{{X: sm.T, Y: 0}, {X: sm.T, Y: 0}})
			if err == nil {
				l.Color = color.RGBA{0xbb, 0xbb, 0xbb, 0xff}
				l.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
				p.Add(&vline{l})
			}
		}
		prev = sm.Phase
	}
}

// vline is a vertical line at a given x across the plot's whole height.
type vline struct{ *plotter.Line }

func (v *vline) Plot(c draw.Canvas, p *plot.Plot) {
	x := p.X.Norm(v.XYs[0].X)
	xc := c.Min.X + vg.Length(x)*(c.Max.X-c.Min.X)
	c.StrokeLine2(v.LineStyle, xc, c.Min.Y, xc, c.Max.Y)
}

// DataRange spans only x, so that the line does not change the y axis.
func (v *vline) DataRange() (xmin, xmax, ymin, ymax float64) {
	x := v.XYs[0].X
	return x, x, 0, 0
}
