package localapi

// WriteAcceptedForTest exposes writeAccepted to the external tests.
var WriteAcceptedForTest = writeAccepted
