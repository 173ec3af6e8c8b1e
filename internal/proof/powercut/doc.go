// Package powercut holds the power-cut tests of tposagent: the real agent
// binary runs with its data dir on lossyfs, a FUSE filesystem
// of the test's own that keeps every write in memory until the file is
// fsynced, and at random moments the power is "cut": everything not yet
// synced is thrown away, except a random part of it that is applied torn
// (whole sectors, in any order), the agent is SIGKILLed, the filesystem is
// unmounted and mounted again with only what survived, and the agent starts
// again on it.
//
// After every cut the test checks that the bbolt file opens and passes
// tx.Check, that the agent did not quarantine it (no outbox.db.corrupt-*
// file), and that every item that got a 202 from the local API is still
// pending or was delivered. At the end the queue drains and every accepted
// item must have reached the fake Ödüyo server (a kasa update superseded by
// a later delivered update of the same card counts as delivered).
//
// The durability model (what survives a cut) is lossyfs's; see its package
// documentation.
//
// Beside the agent, two bare tests put the same cuts under bbolt alone (a
// child process committing transactions; the file must hold a transaction
// no older than the last acknowledged one) and under the outbox package
// with a small CompactMinSize, so that compaction — a new file, a rename
// and a directory fsync — is often what the cut interrupts.
//
// The tests need /dev/fuse and the right to mount: as root, lossyfs calls
// mount(2) itself and needs no fusermount; as another user it needs
// fusermount3 (Debian: fuse3). They skip with a message otherwise. The
// number of cuts defaults to a run of about a minute;
// TPOSAGENT_POWERCUTS=N sets it, TPOSAGENT_POWERCUT_SEED=S repeats the
// random choices of a run (tearing and cut moments; goroutine timing still
// varies):
//
//	TPOSAGENT_POWERCUTS=1000 go test -run TestAgentPowerCuts -v -timeout 60m ./agent/powercut/
package powercut
