// Package hotpath measures what one accepted record costs the agent through
// the local API: BenchmarkHotPath runs the real agent, a bare net/http
// handler that only unmarshals, the first local API, and the local API over
// a queue that commits once per request, each in its own process under the
// same load of 64 clients, and compares their CPU per record (the process's
// user+system time) and throughput with the data dir's fsync rate, all in
// the same run. The package has no code of its own; it is all tests.
//
//	go test -run '^$' -bench HotPath -benchtime 1x ./internal/proof/hotpath
package hotpath
