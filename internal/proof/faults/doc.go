// Package faults holds the fault-matrix tests of tposagent: they prove,
// with the real parts and an injected clock, what docs/protocols.md and
// docs/architecture.md promise when the servers, the cash register or the
// network misbehave. The package has no code of its own; everything
// is in its tests.
//
//   - TestServerFaultMatrix: a real outbox file, agent.NewSender over the
//     Ödüyo client, the fake Ödüyo server (oduyotest) failing in every way
//     a server fails. Each fault is retried or dead-lettered as
//     docs/architecture.md says, nothing is lost, and the backoff (exponential, full jitter,
//     capped, Retry-After in seconds or as a date, reconnect jitter) is
//     measured on the injected clock.
//   - TestDeviceFaultMatrix: every fault mode of the simulated ÖKC on a
//     pseudo-terminal (devicetest), first at the device level (each read
//     returns within its limit with the right error and the cached
//     identity), then under a running agent whose device goes bad after a
//     good read: the agent keeps running, /v1/status shows the error and
//     the cached identity, and registration still sends the fiscal serial.
//   - TestFleetReconnect: 2,000 outboxes (real bbolt files) on one
//     injected clock come back after an outage; the peak of requests per
//     virtual second at the server with reconnect jitter against without.
//
// Every test logs its figures as "RESULT key=value …" lines.
//
// TPOSAGENT_FLEET sets the fleet size of the at-once reconnect (default
// 2000; 500 under -race, 300 with -short) and TPOSAGENT_FLEET_LONG that of
// the long outage (default 300; 100 under -race). The recorded run:
//
//	go test -count=1 -v -run . ./agent/faults | grep RESULT
//	TPOSAGENT_FLEET_LONG=2000 go test -count=1 -v -run 'TestFleetReconnect' ./agent/faults | grep RESULT
package faults
