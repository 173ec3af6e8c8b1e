// Package testrig holds what the tests of several packages share and no
// shipped code may link: WaitFor, the one way a test waits for a
// condition. The rigs themselves live below it (lossyfs, the power-cut
// filesystem). It must not be imported by non-test code.
package testrig

import (
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test if timeout passes first. It is for conditions another goroutine or
// process makes true; a timer the test controls is advanced through a fake
// clock instead.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
