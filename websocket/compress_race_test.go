//go:build race

package websocket

// raceEnabled: the race detector makes sync.Pool drop what is put in it at
// random, so tests that count allocations of pooled paths skip.
const raceEnabled = true
