package harness

import (
	"fmt"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/report"
)

// hubTarget is one server of the hub-broadcast scenario: the hub, and beside
// it the raw prepared-message loop (duplex -variant prepared) and gws's
// Broadcaster (gws's broadcast mode), each if its library is built.
type hubTarget struct{ lib, variant string }

func (t hubTarget) String() string {
	return report.Series(t.lib, t.variant)
}

// hubRoom is the room the hub-broadcast scenario publishes to.
const hubRoom = "bench"

// hubTargets lists the hub-broadcast scenario's servers that can run.
func (r *runner) hubTargets() []hubTarget {
	out := []hubTarget{{lib: report.Hub}}
	if r.libs[report.Ours] != nil {
		out = append(out, hubTarget{lib: report.Ours, variant: "prepared"})
	}
	if r.libs["gws"] != nil {
		out = append(out, hubTarget{lib: "gws"})
	}
	return out
}

// broadcast runs the fan-out scenario for one library.
func (r *runner) broadcast(lib string, round, window int) []report.Record {
	rec := report.Record{Scenario: report.Broadcast, Lib: lib, Round: round, Conns: r.opt.BroadcastSubs, Payload: r.opt.BroadcastPayload, Window: window}
	cfg := loadgen.Config{Proto: proto(lib), Mode: loadgen.ModeBroadcast, Conns: r.opt.BroadcastSubs,
		Payload: r.opt.BroadcastPayload, Window: window, Warmup: r.opt.Warmup, Duration: r.opt.Duration}
	return r.broadcastRun(rec, cfg, "-mode", "broadcast")
}

// hubBroadcast runs the hub-broadcast scenario for one of its servers: the
// broadcast scenario with JSON text messages carrying their send time, and
// for the hub the protocol's connect and subscribe before the run.
func (r *runner) hubBroadcast(tg hubTarget, round, window int) []report.Record {
	rec := report.Record{Scenario: report.HubBroadcast, Lib: tg.lib, Variant: tg.variant, Round: round,
		Conns: r.opt.BroadcastSubs, Payload: r.opt.BroadcastPayload, Window: window}
	cfg := loadgen.Config{Proto: "ws", Mode: loadgen.ModeBroadcast, Conns: r.opt.BroadcastSubs, JSON: true,
		Payload: r.opt.BroadcastPayload, Window: window, Warmup: r.opt.Warmup, Duration: r.opt.Duration}
	if tg.lib == report.Hub {
		cfg.HubRoom = hubRoom
	}
	return r.broadcastRun(rec, cfg, hubArgs(tg)...)
}

func hubArgs(tg hubTarget) []string {
	args := []string{"-mode", "broadcast"}
	if tg.variant != "" {
		args = append(args, "-variant", tg.variant)
	}
	return args
}

// broadcastRun measures one broadcast cell: rec says which, cfg is the load
// (its address filled in here), args the server's.
func (r *runner) broadcastRun(rec report.Record, cfg loadgen.Config, args ...string) []report.Record {
	lib := rec.Lib
	if !r.usable(lib, &rec, false) {
		return []report.Record{rec}
	}
	srv, err := startServer(r.bin[lib], r.opt.ServerCPU, args...)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	defer srv.stop()
	cfg.Addr = srv.addr
	m, res, err := r.measure(srv, cfg)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	if res.Deliveries == 0 {
		rec.Err = fmt.Sprintf("nothing delivered (%d connected, %d failed): %s", res.Conns, res.Failed, srv.stderr)
		return []report.Record{rec}
	}
	rec.DeliveriesPerSec = float64(res.Deliveries) / res.Seconds
	rec.ReplyBytes = float64(res.Bytes) / float64(res.Deliveries)
	rec.SetupCPU = m.setupCPU
	rec.P50, rec.P99, rec.P999 = res.P50, res.P99, res.P999
	rec.CPUPerMsg = m.serverCPU / float64(res.Deliveries) * 1e6
	rec.ServerBusy, rec.LoadBusy = m.serverCPU/m.wall, m.loadCPU/m.wall
	rec.ReadsPerMsg, rec.WritesPerMsg = m.reads/float64(res.Deliveries), m.writes/float64(res.Deliveries)
	rec.Lost = res.Lost
	switch {
	case res.Failed > 0 || res.Errors > 0:
		rec.Err = fmt.Sprintf("%d connections failed, %d lost", res.Failed, res.Errors)
	case res.VerifyErr != "":
		rec.Err = "verify: " + res.VerifyErr
	case cfg.HubRoom != "" && res.Subscribed < cfg.Conns:
		rec.Err = fmt.Sprintf("only %d of %d subscribed", res.Subscribed, cfg.Conns)
	}
	return []report.Record{rec}
}
