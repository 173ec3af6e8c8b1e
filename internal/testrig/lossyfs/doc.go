// Package lossyfs is a FUSE filesystem held in memory that loses, on a
// simulated power cut, what a real disk may lose: the power-cut tests of
// tposagent run the agent with its data dir on it.
//
// # Durability model: what is durable when
//
//   - File data (write, ftruncate, the size a write past the end gives) is
//     durable only after fsync or fdatasync of that file. Until then every
//     change is kept in memory in order, and readers (read and mmap) see it.
//   - A directory entry (creating a file or a directory, unlink, rmdir,
//     rename) is durable only after an fsync of that directory, as POSIX
//     promises and no more: at that moment the whole current namespace of
//     the directory becomes its durable namespace. Until then a cut brings
//     back the names as they were: a new file (even one whose data was
//     fsynced) is gone, an unlinked one is back, a rename is undone (the
//     old file under the target name, the source name still present).
//
// # A cut
//
// FS.Cut computes, atomically, the state that survives: for each file the
// durable content plus, torn, some of the changes since its last fsync,
// chosen by one of these models per file (at random unless
// Options.Tear fixes one):
//
//   - TearNone: every unsynced change is dropped.
//   - TearAll: every unsynced change is applied (what a kill keeps).
//   - TearPrefix: the first k changes are applied, the next one only in part
//     (a random subset of its sectors), the rest dropped — like replaying a
//     dm-log-writes log to a random point.
//   - TearSubset: each sector of each change, and each truncate, is applied
//     or not at random, in order — a disk cache that reorders writes
//     between flushes.
//
// After the cut every change through the old mount fails with EIO (reads
// still see the old content, so a process with the file mapped does not
// fault). The caller then kills the processes using the mount, calls
// Unmount, and Mount again: the new mount serves only what survived, with a
// fresh kernel page cache.
//
// Locks: lossyfs does not ask the kernel to forward flock/fcntl locks, so
// the kernel handles them locally for the mount, which is what bbolt needs
// on one machine. Extended attributes, links and symlinks are not
// supported.
package lossyfs
