// Package chaos holds the reliability and security scenarios of tposagent
// (crash, faults and secrets): the real binary, built once in TestMain,
// runs against the fake servers (agent/oduyo/oduyotest,
// agent/tposl/tposltest) and is killed, starved of disk, fed corrupt files
// and probed for leaked secrets. The package has no code of its own; it is
// all tests.
//
// # Scenarios
//
//   - TestKills: producers enqueue kasa updates and special codes through
//     the local API from several goroutines while the agent drains to a
//     flapping fake Ödüyo and is killed with SIGKILL at random moments. After
//     the last restart the queue drains; every item that got a 202 must have
//     been delivered (a kasa update may be superseded by a later delivered
//     update of the same card), each card's updates arrive in order,
//     duplicates (same Idempotency-Key twice) may only be re-sends of the
//     item that was in flight, and the bbolt file passes tx.Check after every
//     kill and at the end. It logs
//     "RESULT kills=… items=… lost=… duplicates=…".
//   - TestQueueFull: outbox.max_size 1MiB, server down: enqueue until 503,
//     nothing accepted lost, 202 again after a drain.
//   - TestDiskFull (Linux, root): the data dir on a tiny tmpfs mounted by
//     the test; a filler file eats the space: enqueue is refused with 503,
//     nothing accepted is lost, and after the filler is deleted the agent
//     accepts again and drains.
//   - TestCorruptOutboxAtStartup: a garbage file, overwritten meta pages,
//     a file truncated to a third or to four pages, a torn first page and
//     scribbled page headers are each quarantined
//     (outbox.db.corrupt-<timestamp>), shown in status and the log; the
//     agent keeps running, accepts and delivers, and a restart does not
//     quarantine again.
//   - TestSecondAgentOtherConfig: a second agent from another config file
//     naming the same data dir fails within seconds with a clear message.
//   - TestAPIToken, TestTokenComparedInConstantTime, TestListenWarning,
//     TestTLSVerified, TestFilePermissions, TestSecretScan: the local API
//     refuses missing and wrong tokens on every endpoint, and its source
//     compares them with crypto/subtle only; a non-loopback api.listen is
//     warned about in the log and in status; a self-signed server is
//     refused (the error says certificate), also with an unrelated CA file,
//     and accepted once ca_file names its CA (logged as "trusting an extra
//     CA"); the data dir, its files, the rotated log and the installer's
//     config are owner-only even under umask 000; and no configured secret
//     or issued session id appears in any log line, error, CLI or status
//     output, /metrics, or goroutine dump (SIGQUIT) of the whole run.
//   - TestHeaderFlood: hostile local connections without the token trickle
//     header lines (and reconnect whenever the agent closes theirs) while
//     a POS polls the local API on a keep-alive and on a new connection;
//     the agent's RSS stays under 100 MB and every POS request is answered
//     within 1 s. "RESULT header-flood …". Size: TPOSAGENT_FLOOD_CONNS
//     (default 300) and TPOSAGENT_FLOOD_BYTES per connection (default
//     128 KiB); the goal is 1000 and 1048576.
//   - TestStopWithRequestsInFlight: a stop while a record is being sent to
//     an Ödüyo that never answers, a registration waits on a TPOSL that
//     never answers and a POS request is open on the local API: the agent
//     exits cleanly within 5 s, and the record is delivered after a
//     restart. "RESULT stop-in-flight …".
//
// Every fixture scans its own outputs for the secrets when it ends, and
// TestMain prints the total ("RESULT secret-scan texts=… bytes=… found=0").
//
// # Running
//
//	go test -race ./agent/chaos/                      # bounded run (under a minute on 2 cores)
//	TPOSAGENT_CHAOS_KILLS=1000 go test -run TestKills -v ./agent/chaos/
//
// Environment: TPOSAGENT_CHAOS_KILLS (default 200), TPOSAGENT_CHAOS_SEED
// (default: time based, logged), TPOSAGENT_CHAOS_PRODUCERS (default 4).
// With -short the kill count drops to 30. The disk-full scenario needs
// root and tmpfs, and is skipped with a message otherwise.
package chaos
