package harness

import (
	"fmt"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/report"
)

// usable says whether a library can run a scenario; when not, rec says why
// (its build failed, or the scenario compresses and it does not: n/a).
func (r *runner) usable(lib string, rec *report.Record, compress bool) bool {
	l := r.libs[lib]
	switch {
	case !l.Built:
		rec.Err = "build failed"
		return false
	case compress && !l.Compression:
		rec.NA = true
		return false
	}
	return true
}

// echoCell is one run of an echo-type scenario: echo, pipelined echo (depth
// messages in flight) or deflate, for one server (a library, or one of its
// variants).
type echoCell struct {
	scenario, lib, variant       string
	round, conns, payload, depth int
}

func (e echoCell) String() string {
	s := fmt.Sprintf("r%d %s %s c=%d %s", e.round, e.scenario, report.Series(e.lib, e.variant), e.conns, size(e.payload))
	if e.scenario == report.Pipelined || e.scenario == report.PipelinedVariant {
		s += fmt.Sprintf(" depth %d", e.depth)
	}
	return s
}

// echo runs one echo-type cell.
func (r *runner) echo(e echoCell) []report.Record {
	lib := e.lib
	rec := report.Record{Scenario: e.scenario, Lib: lib, Variant: e.variant, Round: e.round, Conns: e.conns, Payload: e.payload, Depth: e.depth}
	compress := e.scenario == report.Deflate
	if !r.usable(lib, &rec, compress) {
		return []report.Record{rec}
	}
	args := []string{"-mode", "echo"}
	if compress {
		args = append(args, "-compress")
	}
	if e.variant != "" {
		args = append(args, "-variant", e.variant)
	}
	srv, err := startServer(r.bin[lib], r.opt.ServerCPU, args...)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	defer srv.stop()
	cfg := loadgen.Config{Addr: srv.addr, Proto: proto(lib), Mode: loadgen.ModeEcho, Conns: e.conns, Payload: e.payload,
		Depth: e.depth, Compress: compress, Warmup: r.opt.Warmup, Duration: r.opt.Duration, Verify: true}
	m, res, err := r.measure(srv, cfg)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	if res.Msgs == 0 || res.Seconds == 0 {
		rec.Err = fmt.Sprintf("no echo in the measured window (%d before it; %d connected, %d failed, %d lost): %s",
			res.Total, res.Conns, res.Failed, res.Errors, srv.stderr)
		return []report.Record{rec}
	}
	rec.MsgsPerSec = float64(res.Msgs) / res.Seconds
	rec.P50, rec.P99, rec.P999 = res.P50, res.P99, res.P999
	rec.CPUPerMsg = m.serverCPU / float64(res.Msgs) * 1e6
	rec.ServerBusy, rec.LoadBusy = m.serverCPU/m.wall, m.loadCPU/m.wall
	rec.ReadsPerMsg, rec.WritesPerMsg = m.reads/float64(res.Msgs), m.writes/float64(res.Msgs)
	rec.Negotiated, rec.Extension = res.Negotiated, res.Extension
	rec.ReplyBytes = float64(res.Bytes) / float64(res.Msgs)
	rec.Lost = int64(res.Errors + res.Failed)
	switch {
	case res.VerifyErr != "":
		rec.Err = "verify: " + res.VerifyErr
	case compress && res.Negotiated == 0:
		rec.Err = "permessage-deflate was not negotiated"
	}
	return []report.Record{rec}
}
