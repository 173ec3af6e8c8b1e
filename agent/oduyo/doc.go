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
// one is in flight the others wait for it. The client is the one owner
// of the re-login: on 401/403 it logs in again once and repeats the call
// (the session of that fresh login is kept); a second 401/403 with
// Ödüyo's JSON is an Auth error naming the credentials. Its callers never
// log in again for it.
//
// # Classification
//
// Only Ödüyo can accept or reject a record. Ödüyo's answer is a JSON
// object whose "status" is a boolean. Success is HTTP 200, 201 or 202 with
// "status": true. Everything else is an *Error with a Class:
//
//   - Permanent: Ödüyo's answer with "status": false (any code), or a 4xx
//     with Ödüyo's answer. The record is refused.
//   - Transient: network errors, timeouts, cancelled contexts, 408, 429,
//     5xx (with Retry-After, seconds or HTTP date, capped at a day), and
//     every answer that is not Ödüyo's (Error.Foreign): a 3xx (redirects
//     are never followed: a redirected POST would lose its body; captive
//     portals redirect), an HTML page, an empty or malformed body, JSON
//     without a boolean status ("true", 1), a 4xx without Ödüyo's JSON (a
//     proxy's 404), other 2xx. Such an answer says nothing about the
//     record: it waits.
//   - Auth: login refused (a JSON answer with 4xx or "status": false at
//     login, or without a session id — a redirect or an HTML page at login
//     is Transient), or 401/403 with Ödüyo's JSON again right after a
//     fresh login.
//
// Probe counts the server as reachable only when Ödüyo answers: a login
// (or a refusal of the credentials in JSON) and a list call answered with
// Ödüyo's JSON.
//
// # Special codes and unknown outcomes
//
// Ödüyo documents no idempotency. A create is never replayed by the HTTP
// transport (Go's transport re-sends requests carrying an Idempotency-Key
// on a broken reused connection; creates carry no GetBody). When a
// create's outcome is unknown, FindSpecialCode looks the record up
// (…/erp_special_code/list filtered on integration_id, rows compared on
// integration_id, code, typecode, key1 and key2) before it is sent again.
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
