package main

import (
	"testing"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/smoke"
	"github.com/duplexws/duplex/bench/internal/srvkit"
)

func TestSmoke(t *testing.T) { smoke.Run(t, start, features, "ws") }

func TestSmokePrepared(t *testing.T) {
	for _, lc := range []loadgen.Config{{}, {JSON: true}} {
		smoke.Broadcast(t, start, srvkit.Config{Variant: "prepared"}, lc)
	}
}
