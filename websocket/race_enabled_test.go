//go:build race

package websocket

// raceEnabled: the race detector makes sync.Pool drop what is put in it at
// random, so tests that count allocations of pooled paths skip, and its
// instrumentation makes stack frames bigger, so bounds on stack sizes do not
// hold under it.
const raceEnabled = true

// RaceEnabled is raceEnabled for the external test package.
const RaceEnabled = raceEnabled
