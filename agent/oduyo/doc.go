// Package oduyo is the client of the Ödüyo ERP API: login and session
// handling, kasa card updates and special code creation, the
// classification of every result.
//
// # Session
//
// Login is POST {base_url}/api/v1/ws/login with the form fields username,
// oduyo_api_key and password. The answer is undocumented; the session id
// is taken from a JSON object (session_id, SESSION_ID, sessionId, token,
// access_token or data — keys matched case-insensitively, also nested in
// data up to three levels), from a JSON string, or from a bare token body.
// A session id must be 8–4096 visible ASCII characters (it goes into a
// header unchanged). The session is considered to live Config.SessionTTL
// from the moment the login was sent and is renewed on the first call
// within Config.RenewBefore of that. All callers share one login: while
// one is in flight the others wait for it. On 401/403 the client logs in
// again once and repeats the call; a second 401/403 is an Auth error.
//
// # Classification
//
// Success is HTTP 200 with "status": true (also "true" or 1). Everything
// else is an *Error with a Class:
//
//   - Transient: network errors, timeouts, cancelled contexts, 408, 429,
//     5xx (with Retry-After, seconds or HTTP date, capped at a day), and a
//     200 whose body is HTML, empty or malformed JSON (a proxy, a captive
//     portal or a half-written answer: the idempotency key makes the
//     retry safe).
//   - Permanent: "status": false with any code, other 4xx, 3xx (redirects
//     are never followed: a redirected POST would lose its body), other
//     2xx, and a 200 JSON answer without a status.
//   - Auth: login refused (4xx or "status": false at login, or an answer
//     without a session id), or 401/403 again right after a fresh login.
//
// Error strings and log lines never contain the password, the API key or
// a session id; server messages are cut to 200 characters and scrubbed of
// those values.
//
// # Imports
//
// The client knows nothing of the outbox, the device or the licence
// server (it must not import them): the agent turns its errors into outbox
// verdicts. Records are validated before they are queued, by agent/records.
package oduyo
