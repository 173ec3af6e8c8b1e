//go:build linux

package lossyfs

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTearProperties checks the tearing models without mounting anything:
// none keeps the synced content, all gives what readers saw, and the torn
// models give, at every byte, a value some change (or the synced content,
// or the zeros of an extension) put there.
func TestTearProperties(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	for round := range 500 {
		model := Tear(1 + round%4)
		f := New(Options{Rand: rand.New(rand.NewPCG(uint64(round), 1)), Tear: model})
		base := make([]byte, rnd.IntN(5000))
		for i := range base {
			base[i] = 'a'
		}
		fd := &fileData{data: slices.Clone(base), durable: slices.Clone(base)}
		for v := range 1 + rnd.IntN(8) {
			var c change
			if rnd.IntN(6) == 0 {
				c = change{off: int64(rnd.IntN(6000)), trunc: true}
			} else {
				c = change{off: int64(rnd.IntN(6000)), data: bytes.Repeat([]byte{byte('B' + v)}, 1+rnd.IntN(3000))}
			}
			fd.log = append(fd.log, c)
			fd.data = apply(fd.data, c)
		}
		var rep CutReport
		rep.Models = map[Tear]int{}
		got := f.tear(fd, &rep)
		switch model {
		case TearNone:
			if !bytes.Equal(got, base) {
				t.Fatalf("round %d: none changed the synced content", round)
			}
		case TearAll:
			if !bytes.Equal(got, fd.data) {
				t.Fatalf("round %d: all differs from what readers saw", round)
			}
		default:
			for i, b := range got {
				ok := b == 0 || (i < len(base) && b == base[i])
				for _, c := range fd.log {
					if !c.trunc && int64(i) >= c.off && int64(i) < c.off+int64(len(c.data)) && b == c.data[0] {
						ok = true
					}
				}
				if !ok {
					t.Fatalf("round %d (%v): byte %d = %q, which nothing wrote", round, model, i, b)
				}
			}
		}
		if rep.AppliedOps+rep.TornOps+rep.DroppedOps != len(fd.log) {
			t.Fatalf("round %d (%v): applied %d + torn %d + dropped %d != %d changes", round, model, rep.AppliedOps, rep.TornOps, rep.DroppedOps, len(fd.log))
		}
	}
}
