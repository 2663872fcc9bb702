package main

import (
	"testing"

	"github.com/duplexws/duplex/bench/internal/smoke"
)

func TestSmoke(t *testing.T) { smoke.Run(t, start, features, "ws") }
