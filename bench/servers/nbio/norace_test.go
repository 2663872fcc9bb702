//go:build !race

package main

const raceSkip = ""
