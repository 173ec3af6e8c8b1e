//go:build race && linux

package main

// raceEnabled relaxes timing targets under the race detector (the
// footprint test, Linux only).
const raceEnabled = true
