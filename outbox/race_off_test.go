//go:build !race

package outbox_test

// raceEnabled: the race detector's shadow memory multiplies RSS.
const raceEnabled = false
