//go:build race

package faults_test

// raceEnabled: the race detector slows the fleet's ten thousand goroutines
// about tenfold, so the default fleet is smaller under -race.
const raceEnabled = true
