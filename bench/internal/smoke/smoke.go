// Package smoke is the shared smoke test of the benchmark servers: it starts a
// server in the test's process and drives a few echoes, a small broadcast and
// a few idle connections through it with the real load generator.
package smoke

import (
	"testing"
	"time"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/srvkit"
)

// Run smoke-tests the server that start starts. proto is "ws" or "tcp".
func Run(t *testing.T, start srvkit.StartFunc, feat srvkit.Features, proto string) {
	srvkit.RaiseFileLimit()
	serve := func(t *testing.T, mode string, compress bool) string {
		srv, err := start(srvkit.Config{Addr: "127.0.0.1:0", Mode: mode, Compress: compress, ReadLimit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		return srv.Addr
	}
	load := func(t *testing.T, cfg loadgen.Config) loadgen.Result {
		t.Helper()
		cfg.Proto = proto
		res, err := loadgen.Run(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.VerifyErr != "" || res.Failed > 0 || res.Errors > 0 {
			t.Fatalf("%+v", res)
		}
		return res
	}
	echo := func(t *testing.T, compress bool, payloads ...int) {
		addr := serve(t, srvkit.ModeEcho, compress)
		for _, p := range payloads {
			res := untilEnough(100*time.Millisecond, func(window time.Duration) (loadgen.Result, bool) {
				res := load(t, loadgen.Config{Addr: addr, Mode: loadgen.ModeEcho, Conns: 3, Payload: p, Depth: 2,
					Compress: compress, Duration: window, Verify: true})
				return res, res.Msgs >= 3
			})
			if res.Msgs < 3 {
				t.Fatalf("payload %d: only %d echoes: %+v", p, res.Msgs, res)
			}
			if compress && res.Negotiated != res.Conns {
				t.Fatalf("permessage-deflate negotiated on %d of %d connections", res.Negotiated, res.Conns)
			}
		}
	}

	t.Run("echo", func(t *testing.T) { echo(t, false, 1, 125, 200, 70000) })
	t.Run("broadcast", func(t *testing.T) {
		addr := serve(t, srvkit.ModeBroadcast, false)
		res := untilEnough(150*time.Millisecond, func(window time.Duration) (loadgen.Result, bool) {
			res := load(t, loadgen.Config{Addr: addr, Mode: loadgen.ModeBroadcast, Conns: 8, Payload: 64, Duration: window})
			return res, res.Deliveries >= 9
		})
		if res.Deliveries < 9 || res.Lost > 0 {
			t.Fatalf("%+v", res)
		}
	})
	if proto == "ws" {
		t.Run("broadcast-json", func(t *testing.T) {
			Broadcast(t, start, srvkit.Config{}, loadgen.Config{JSON: true})
		})
	}
	t.Run("idle", func(t *testing.T) {
		addr := serve(t, srvkit.ModeEcho, false)
		ctl := make(chan loadgen.Command, 2)
		ctl <- loadgen.Command{N: 20}
		ctl <- loadgen.Command{N: -1}
		var seen []int
		res, err := loadgen.Run(loadgen.Config{Addr: addr, Proto: proto, Mode: loadgen.ModeIdle, Conns: 5, PerIP: 7}, ctl,
			func(e loadgen.Event) { seen = append(seen, e.N) })
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || seen[0] != 5 || seen[1] != 20 || res.Failed > 0 {
			t.Fatalf("connected %v, %+v", seen, res)
		}
	})
	if feat.Compression {
		t.Run("deflate", func(t *testing.T) { echo(t, true, 1024, 20000) })
	}
}

// Broadcast smoke-tests one broadcast run, text or binary, through the server
// that start starts in broadcast mode with srv's Variant, with the load
// generator configured as lc (its address, mode, counts and duration are
// filled in): 8 subscribers (and the publisher), every message delivered to
// each, with a lag that the embedded send time gives when lc.JSON.
func Broadcast(t *testing.T, start srvkit.StartFunc, srv srvkit.Config, lc loadgen.Config) loadgen.Result {
	t.Helper()
	srvkit.RaiseFileLimit()
	srv.Addr, srv.Mode, srv.ReadLimit = "127.0.0.1:0", srvkit.ModeBroadcast, 1<<20
	s, err := start(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	lc.Addr, lc.Proto, lc.Mode, lc.Conns, lc.Payload = s.Addr, "ws", loadgen.ModeBroadcast, 8, 64
	lc.Duration = 150 * time.Millisecond
	res, err := loadgen.Run(lc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.VerifyErr != "" || res.Failed > 0 || res.Errors > 0 || res.Deliveries < 8 || res.Lost > 0 ||
		res.P50 <= 0 || res.Max > 1e6 { // a lag over 1 s: a misread send time
		t.Fatalf("%+v", res)
	}
	return res
}

// untilEnough runs a measurement over window, and again over a window four
// times longer while it saw too little, up to about 10 s in all. A few
// messages prove that a server works; how many fit in a window is the
// benchmark's business, not the smoke test's, and a loaded machine or -race
// can make a short window see none.
func untilEnough(window time.Duration, run func(window time.Duration) (loadgen.Result, bool)) loadgen.Result {
	for {
		res, enough := run(window)
		if enough || window > 2*time.Second {
			return res
		}
		window *= 4
	}
}
