// Package outbox is the agent's durable queue: kasa card updates and
// special codes accepted from the POS application wait here, in one bbolt
// file, until the server has confirmed them.
//
// # Semantics
//
//   - Enqueue returns only after the item is committed with fsync. One
//     writer goroutine batches every waiting request (enqueues, send
//     results, retry/drop) into one transaction: concurrent producers share
//     the fsync (group commit). The commit runs in its own goroutine while
//     the loop collects the next batch and keeps handing due items of other
//     keys to the workers. A request that fails inside the transaction is
//     taken out and the rest applied again without it: it gets its own
//     error, the others commit.
//   - Delivery is at least once: an item is deleted only after the Sender
//     said Delivered. Each item has a stable IdempotencyKey.
//   - FIFO per Entry.Key; different keys are sent in parallel, at most
//     Options.Concurrency at once. The next item of a key is handed out only
//     after the previous one's result is committed, so after a crash an old
//     item is never re-sent after a newer one of its key.
//   - Coalescing: an Entry with Coalesce replaces the pending coalescable
//     items of the same Key and Kind (never the one in flight), and takes
//     their place: their due time and their turn among due heads.
//   - Cards: an Entry's Aliases link to its Key, one record per alias; see
//     cards.go for the rules, the retry check and the bounds.
//   - Verdicts: Delivered deletes; Retry backs off with full jitter
//     (uniform in [0, min(RetryMax, RetryBase*2^(attempts-1)))), at least
//     RetryAfter (capped at RetryAfterMax), and a RetryAfter pauses all
//     sending until it has passed or Retry is called on a pending item
//     ("send now", a person's); no probe runs during the pause (a Kick, a
//     failed send and the probe backoff wait for its end) and none ends
//     it; Reauth sends again at once, once (a second Reauth is a Retry); Reject
//     moves the item to the dead letters with its reason. A failing item
//     only delays its own key.
//   - Unreadable records: a pending record that cannot be decoded is moved
//     to the dead letters by itself (Kind KindUnreadable, reason
//     "unreadable record", the stored bytes kept in its payload); it cannot
//     be retried, only dropped. Records are not decoded at Open, so one
//     damaged record never condemns the file.
//   - Time: due times are wall-clock. One further ahead than any backoff,
//     pause or hold can reach was set before the clock went back and counts
//     as due now; timers measure elapsed time (internal/clock).
//   - Offline: a Retry without RetryAfter triggers a Probe. While the probe
//     fails the queue sends nothing and probes on a capped backoff plus a
//     random 0..ReconnectJitter; Kick (a hint, not a person's request)
//     moves the next probe to a random 0..ReconnectJitter from the kick.
//     When a probe succeeds every backoff is reset and the queue drains at
//     once: the jitter was waited before the probe, so a fleet that learns
//     of a reconnect in one second neither probes nor sends in one second.
//     Retry on a pending item probes at once. Run's start holds the first
//     sends for a random 0..ReconnectJitter.
//   - Bounded: Enqueue fails with ErrFull when the live content would pass
//     MaxSize, or when the file's pages would pass bbolt's own limit, set
//     above it (MaxSize plus a quarter, at least 16 MiB, rounded up the way
//     bbolt grows the file): ErrFull always comes before bbolt's
//     ErrMaxSizeReached. On Windows bbolt sizes the file in powers of two
//     up to 1 GiB, so the file may take up to that rounded size on disk.
//   - Bookkeeping (janitor.go): idempotency keys (7 days), dead letters
//     (DeadLetterTTL, 30 days; at most DeadLetterMax, 10,000, oldest
//     first), card aliases and delivered marks (cards.go) are pruned by a
//     janitor goroutine every JanitorEvery of the queue's clock, full queue
//     or not, and at once when an enqueue is refused as full or the queue
//     drains, through the commit pipeline; Stats.Bookkeeping counts each
//     kind. Page lists the items in short read transactions, holding at
//     most 256 KiB of records at once.
//   - Compaction: when a drain empties the queue and the file is at least
//     CompactMinSize and four times its content, it is copied to
//     <path>.compact, which is renamed over the file and the directory
//     fsynced. Elsewhere than on Windows the copy, open and locked, simply
//     becomes the queue's file; on Windows (no rename over an open file)
//     the file is closed, renamed and opened again, a failed reopen retried
//     and, until it succeeds, reported (Stats.LastError) with every request
//     failing with ErrClosed. There the queue also holds <path>.lock, opened
//     with no sharing from Open to Close (lockfile.go), so the file is never
//     left unlocked while it is closed: a second agent gets ErrLocked.
//   - Damage: an existing file is checked before bbolt may write to it
//     (the meta pages read directly, then a read-only open and check). A
//     file that fails is renamed, byte for byte, to
//     <path>.corrupt-<UTC timestamp> and a new one is made (Stats.Quarantined,
//     an error log line); a new file's directory entry is fsynced before
//     Open returns. An error that is not about the content (I/O, a fault
//     on a mapped page, a sharing violation) is retried, then returned,
//     never quarantined; with
//     KeepTrying, Open returns a closed queue instead (Stats.Closed, every
//     record refused with ErrClosed and the reason) that tries the full
//     open again every second. A file locked by another process gives
//     ErrLocked after OpenTimeout, KeepTrying or not.
//   - A vanished file: every commit, every 10 s and every Stats compare the
//     open file with the path. When the file was deleted or replaced,
//     Enqueue fails with ErrFileGone from then on, the open content is saved
//     back to the path (or, when another file is there, beside it), and
//     Stats.FileGone says so; items already accepted are still delivered.
//     On Linux the comparison is device and inode; on Windows, which
//     refuses to delete or rename over the open file (its handle does not
//     share delete access), it is only whether a file is at the path,
//     read without opening it (see identity_windows.go for why).
//   - Storage faults while running (faults.go): a send result whose
//     commit fails keeps its key busy and is committed again on a backoff
//     (never handed out again blind); no send starts while a whole commit
//     fails; Stats.Unrecorded and "delivery results cannot be recorded: …"
//     say so. A fault on the mapped file (EIO, truncation) is an error,
//     never a crash, and the file is then opened again the full way. So is
//     a commit the disk refused after bbolt applied it in memory (a failed
//     write or fsync): the file may hold all, part or none of it, so bbolt's
//     memory and the counters are not trusted; it is reopened (checked,
//     counters read back) before the next commit, and while that open fails
//     the queue is closed (Stats.Closed), retried every second for ten
//     tries, then every five. A panic recovered inside bbolt can leave its
//     locks held: that DB is never entered again (calls fail at once), a
//     commit stuck in it is abandoned after a second, and the file is
//     opened again.
//     Enqueue waits at most Options.EnqueueTimeout for its commit
//     (ErrCommitTimeout, ErrMaybeStored); Close abandons a commit that does
//     not finish within Options.CloseTimeout (ErrCommitAbandoned).
//   - Emptied or replaced (state.go): <path>.state keeps what was last
//     committed; a file found holding less is logged as an error and shown
//     in Stats.Emptied.
//   - A lost mapping: when bbolt cannot map the file again as it grows
//     (out of address space or, on Windows, of handles), it leaves the file
//     unmapped and every transaction fails. The queue closes and reopens
//     the file and runs the failed commit again, so callers get their
//     answer and no send result is lost (which would send a record twice);
//     a dispatch that cannot read the file is tried again a second later.
//
// # On-disk layout
//
// Buckets (ids are 8-byte big-endian NextSequence values of "items", so
// cursor order is FIFO order):
//
//	items  id -> record                  pending items
//	dead   id -> record                  dead letters (same id)
//	bykey  len(key) u16, key, id -> v    per-key FIFO index of pending items;
//	                                     v is the head's sched key, else empty
//	sched  due u64 (unix ns), turn -> key  one entry per key with pending items: its head;
//	                                     turn is the head's id, or the id of the
//	                                     oldest item a coalescing head replaced
//	meta   name -> u64                   counters: pending, dead, enqueued,
//	                                     delivered, coalesced, dead_lettered, version;
//	                                     card_links(_bytes), card_marks(_bytes), undecided
//	alias     name -> 0 at u64 key       card links (cards.go); alias_at: at u64, name
//	done      key -> id u64, at u64      newest delivered coalescing item; done_at: at u64, key
//	undecided id -> ""                   items waiting for a lookup that cannot decide
//	idem, idem_at                        producers' idempotency keys (idempotency.go)
//
// A record is a version byte (1), a uvarint length, a JSON header (kind,
// key, idempotency key, times in unix ns, attempts, last error, coalesce,
// dead reason/time) and then the payload bytes exactly as enqueued.
//
// Bookkeeping buckets: "idem" (producer's idempotency key -> first use,
// item id, digest of kind and payload, item key) and "idem_at" (first use,
// key), for forgetting them oldest first; "alias", "alias_at", "done",
// "done_at": the card table (cards.go).
//
// The sender finds work by walking "sched" from the start: due heads come
// first, and the walk stops at the first head that is not due yet, so the
// cost does not depend on how many items wait. Nothing is loaded into
// memory wholesale; counts come from "meta".
package outbox
