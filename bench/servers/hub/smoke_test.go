package main

import (
	"testing"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/smoke"
	"github.com/duplexws/duplex/bench/internal/srvkit"
)

func TestSmoke(t *testing.T) {
	res := smoke.Broadcast(t, start, srvkit.Config{}, loadgen.Config{HubRoom: "bench"})
	if res.Subscribed != 8 {
		t.Fatalf("%d subscribed, want 8: %+v", res.Subscribed, res)
	}
	if _, err := start(srvkit.Config{Addr: "127.0.0.1:0", Mode: srvkit.ModeEcho}); err == nil {
		t.Fatal("the hub server started in echo mode")
	}
}
