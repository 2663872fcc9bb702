package harness

import (
	"fmt"
	"time"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/report"
)

func (r *runner) settleMin() time.Duration {
	if r.opt.Short {
		return 500 * time.Millisecond
	}
	return 1500 * time.Millisecond
}

// settledRSS waits for the server's RSS to stop moving and returns it.
func (r *runner) settledRSS(pid int) int64 {
	time.Sleep(r.settleMin())
	prev, _ := rssBytes(pid)
	for i := 0; i < 25; i++ {
		time.Sleep(200 * time.Millisecond)
		cur, _ := rssBytes(pid)
		d := cur - prev
		if d < 0 {
			d = -d
		}
		if float64(d) < 0.002*float64(cur) {
			return cur
		}
		prev = cur
	}
	return prev
}

// scavengedRSS waits for the server's RSS to stop falling after a
// collection and returns it. The runtime's scavenger gives freed memory
// back in bursts spread over seconds, so settledRSS's 200 ms steps would
// take a pause between two bursts for the end: this compares RSS 2 s apart.
func (r *runner) scavengedRSS(pid int) int64 {
	prev, _ := rssBytes(pid)
	for range 15 {
		time.Sleep(2 * time.Second)
		cur, _ := rssBytes(pid)
		if float64(prev-cur) < 0.005*float64(cur) {
			return cur
		}
		prev = cur
	}
	return prev
}

// idle opens the idle steps' connection counts one after the other on one
// server and reads its RSS at each, once it has settled.
func (r *runner) idle(lib string, round int) []report.Record {
	return r.idleVariant(lib, round, "")
}

// idleVariant is idle for a server variant ("" is the server as its README
// has it; duplex's "accept" serves from Accept and a goroutine of its own,
// "events" from the event loop), its records kept apart from the main
// tables under IdleVariant.
func (r *runner) idleVariant(lib string, round int, variant string) []report.Record {
	scenario := report.Idle
	if variant != "" {
		scenario = report.IdleVariant
	}
	return r.idleScenario(scenario, lib, round, variant)
}

// idleScenario is idle (scenario Idle or IdleVariant) or, for DeflateIdle,
// idle after negotiating permessage-deflate and exchanging report.DeflateChat
// compressed messages per connection.
func (r *runner) idleScenario(scenario, lib string, round int, variant string) []report.Record {
	compress := scenario == report.DeflateIdle
	base := report.Record{Scenario: scenario, Lib: lib, Round: round, Variant: variant}
	steps := r.opt.IdleSteps
	if compress {
		steps = r.opt.DeflateIdleSteps
	}
	fail := func(err string) []report.Record {
		var out []report.Record
		for _, n := range steps {
			rec := base
			rec.Conns, rec.Err = n, err
			out = append(out, rec)
		}
		return out
	}
	if !r.usable(lib, &base, compress) {
		return fail(base.Err)
	}
	args := []string{"-mode", "echo"}
	if variant != "" {
		args = append(args, "-variant", variant)
	}
	cfg := loadgen.Config{Proto: proto(report.Series(lib, variant)), Mode: loadgen.ModeIdle}
	if compress {
		args = append(args, "-compress")
		cfg.Compress, cfg.Chat = true, report.DeflateChat
	}
	srv, err := startServer(r.bin[lib], r.opt.ServerCPU, args...)
	if err != nil {
		return fail(err.Error())
	}
	defer srv.stop()
	rss0 := r.settledRSS(srv.pid)
	cfg.Addr, cfg.Conns = srv.addr, steps[0]
	lp, err := startLoad(r.opt.Self, r.opt.LoadCPU, cfg)
	if err != nil {
		return fail(err.Error())
	}
	var out []report.Record
	for i, n := range steps {
		rec := base
		rec.Conns = n
		var ev loadgen.Event
		var ok bool
		select {
		case ev, ok = <-lp.events:
		case <-time.After(3 * time.Minute):
		}
		if !ok || ev.Kind != "connected" {
			_, err := lp.wait(5 * time.Second)
			for _, m := range steps[i:] {
				rec.Conns, rec.Err = m, fmt.Sprintf("connecting failed: %v", err)
				out = append(out, rec)
			}
			return out
		}
		rss := r.settledRSS(srv.pid)
		rec.RSSBase, rec.RSS = rss0, rss
		rec.BytesPerConn = float64(rss-rss0) / float64(ev.N)
		if !compress && i == len(steps)-1 {
			// Steady, at the largest count: after the collections the
			// runtime would run by itself in four idle minutes (one
			// every two), each followed by the scavenger's return of
			// what it freed. One is not enough: the scavenger keeps
			// 1.1 times the heap in use at the last collection's mark
			// termination, before its sweep, so the first one after
			// the handshakes still counts the spans of their garbage,
			// and only the second lets them go.
			for range report.SteadyCollections {
				srv.send("gc")
				rss = r.scavengedRSS(srv.pid)
			}
			rec.SteadyBytesPerConn = float64(rss-rss0) / float64(ev.N)
			rec.SteadyCollections = report.SteadyCollections
		}
		if ev.N < n {
			rec.Lost = int64(n - ev.N)
			rec.Err = fmt.Sprintf("only %d of %d connections opened", ev.N, n)
		}
		out = append(out, rec)
		if i+1 < len(steps) {
			lp.send(fmt.Sprintf("grow %d", steps[i+1]))
		}
	}
	lp.send("stop")
	res, err := lp.wait(time.Minute)
	switch {
	case err != nil:
		out[len(out)-1].Err = err.Error()
	case compress:
		out[len(out)-1].Negotiated, out[len(out)-1].Extension = res.Negotiated, res.Extension
		switch want := int64(report.DeflateChat) * int64(res.Conns); {
		case res.Negotiated < res.Conns:
			out[len(out)-1].Err = fmt.Sprintf("permessage-deflate negotiated on %d of %d connections", res.Negotiated, res.Conns)
		case res.Errors > 0 || res.Total < want:
			out[len(out)-1].Err = fmt.Sprintf("%d of %d messages echoed, %d connections lost", res.Total, want, res.Errors)
		}
	}
	return out
}
