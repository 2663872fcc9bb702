//go:build linux

package loadgen

import (
	"golang.org/x/sys/unix"
)

// load runs the warm-up and the measured time of an echo or broadcast run.
func (g *gen) load(events func(Event)) error {
	g.running = true
	now := g.now()
	if g.cfg.Mode == ModeEcho {
		for _, c := range g.conns {
			if c.state == stOpen {
				g.queue(c, g.cfg.Depth)
			}
		}
	} else {
		g.publish(now)
	}
	warmEnd := now + int64(g.cfg.Warmup)
	for {
		if !g.measuring && now >= warmEnd {
			g.startMeasure(events)
		}
		if err := g.poll(5); err != nil {
			return err
		}
		now = g.now()
		if g.measuring && now-g.mStart >= int64(g.cfg.Duration) {
			g.measuring = false
			g.running = false
			g.mEnd = now
			g.cpu1 = selfCPU()
			events(Event{Kind: "measure-end"})
			return nil
		}
		if g.cfg.Mode == ModeBroadcast {
			g.retireStale(now)
			g.publish(now)
		}
	}
}

// runLoad runs an echo or broadcast load and reads its figures into res.
func (g *gen) runLoad(events func(Event), res *Result) error {
	if err := g.load(events); err != nil {
		return err
	}
	res.Seconds = float64(g.mEnd-g.mStart) / 1e9
	res.CPU = g.cpu1 - g.cpu0
	res.Total = g.total
	res.Msgs, res.Bytes = g.msgs, g.bytes
	res.Published, res.Deliveries, res.Lost = g.published, g.deliveries, g.lost
	res.P50 = g.hist.quantile(0.50) / 1e3
	res.P99 = g.hist.quantile(0.99) / 1e3
	res.P999 = g.hist.quantile(0.999) / 1e3
	res.Max = float64(g.hist.max) / 1e3
	return nil
}

func (g *gen) startMeasure(events func(Event)) {
	g.hist.reset()
	g.msgs, g.bytes, g.published, g.deliveries, g.lost = 0, 0, 0, 0, 0
	g.measuring = true
	events(Event{Kind: "measure-start"})
	g.cpu0 = selfCPU()
	g.mStart = g.now()
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
