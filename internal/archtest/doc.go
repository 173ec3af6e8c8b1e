// Package archtest holds the test that keeps the architecture honest: the
// direction of imports between the rooms of the repository, and that the
// shipped binary links no test rig. It has no code of its own.
package archtest
