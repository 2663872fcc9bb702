//go:build race

package websocket_test

// raceEnabled: the race detector's instrumentation makes stack frames
// bigger, so bounds on stack sizes do not hold under it.
const raceEnabled = true
