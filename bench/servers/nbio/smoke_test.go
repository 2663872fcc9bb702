package main

import (
	"testing"

	"github.com/duplexws/duplex/bench/internal/smoke"
)

func TestSmoke(t *testing.T) {
	if raceSkip != "" {
		t.Skip(raceSkip)
	}
	smoke.Run(t, start, features, "ws")
}
