//go:build !race

package websocket

// raceEnabled: see race_enabled_test.go.
const raceEnabled = false

// RaceEnabled is raceEnabled for the external test package.
const RaceEnabled = raceEnabled
