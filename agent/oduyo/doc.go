// Package oduyo is the client of the Ödüyo ERP API: login and session
// handling, kasa card updates and special code creation, the
// classification of every result for the outbox, and the validation and
// normalisation of records before they are queued.
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
// # Records
//
// NormalizeKasa and NormalizeSpecialCode take the column object (no
// {"column": …} wrapper) as the POS application sent it and return the
// canonical column and the record key. Rules:
//
//   - The input must be one JSON object of valid UTF-8, at most
//     MaxRecordBytes; invalid bytes and \u escapes of unpaired UTF-16
//     surrogates are rejected, never repaired. A leading UTF-8 BOM is
//     dropped. Trailing data after the object is an error.
//   - Only the fields of the spec are allowed: an unknown field (a typo,
//     a different case) is an error naming it, and so is a duplicate key.
//     Values are scalars: an object or array value is an error, so nesting
//     is bounded by construction.
//   - Types: text fields must be JSON strings of at most MaxTextRunes
//     characters without control characters other than tab, CR and LF.
//     id is a positive integer given as a number or a digit string
//     (leading zeros dropped; "" means absent). status is "0" or "1" (the
//     numbers 0 and 1 are accepted and sent as strings). Datetimes are
//     exactly DateTimeLayout ("2006-01-02 15:04:05"); "" passes as is.
//     Money fields (price*, balance*) go through NormalizeMoney and are
//     sent as "1260.50"; "" passes as is, as in the spec's example.
//   - A null value means the field is absent and is left out.
//   - Required: kasa id or integration_id; special code integration_id and
//     code. integration_id must not begin or end with spaces.
//   - Nothing else is changed: text is not trimmed, not re-cased and not
//     re-normalised, so Turkish text (ğüşıöçİ) is sent byte for byte.
//
// The canonical column lists the fields in the order of the spec, id as a
// JSON number and every other value as a string, without HTML escaping.
// Keys: "kasa:id:<id>" when id is given, else "kasa:int:<integration_id>";
// "special_code:<integration_id>".
package oduyo
