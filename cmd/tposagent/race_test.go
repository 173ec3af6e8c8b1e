//go:build race

package main

// raceEnabled relaxes timing targets under the race detector.
const raceEnabled = true
