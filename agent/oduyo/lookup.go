package oduyo

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// Lookup limits: rows asked per page, and pages read when the server
// returns full pages that do not match (it ignores the filter).
const (
	lookupPageSize = 100
	lookupMaxPages = 10
)

// ErrLookupInconclusive is returned (wrapped in a Transient *Error) by
// FindSpecialCode and FindKasaCard when the server answered but the answer could not
// settle the question: it ignored the filter and had more rows than the
// lookup reads.
var ErrLookupInconclusive = errors.New("lookup inconclusive")

// matchFields are compared, besides integration_id, between a special
// code and a row of the list: several creates may share an integration_id
// (the outbox keeps them in order), and a row counts as this record only
// when the fields that identify it agree. Fields the row does not carry,
// or that the record leaves empty, are not compared.
var matchFields = []string{"code", "typecode", "key1", "key2"}

// FindSpecialCode reports whether Ödüyo already holds this special code
// (column as from NormalizeSpecialCode): POST …/erp_special_code/list
// filtered on its integration_id, then a row must agree on matchFields.
// Used before sending a create again whose earlier outcome is unknown
// (Ödüyo documents no idempotency).
//
// Tolerated: "nothing found" as 404 {"status": false}, as "status": false
// with 200, or as an empty "data"; ids and values as strings or numbers;
// a server that ignores the filter (every returned row is checked here,
// and full pages are followed with offset = highest id + 1, up to
// lookupMaxPages). A 401/403 logs in again once. The error is a *Error:
// Transient when the question stays open (network, 5xx, a 4xx or an
// answer that is not Ödüyo's, ErrLookupInconclusive), Auth when the
// credentials are refused, Permanent for a column without integration_id.
func (c *Client) FindSpecialCode(ctx context.Context, column json.RawMessage) (bool, error) {
	const op = "look up special code"
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(column, &rec); err != nil {
		return false, &Error{Op: op, Class: Permanent, Msg: "column is not a json object"}
	}
	integrationID := scalarString(rec["integration_id"])
	if integrationID == "" {
		return false, &Error{Op: op, Class: Permanent, Msg: "column has no integration_id"}
	}
	want := map[string]string{}
	for _, f := range matchFields {
		if v := scalarString(rec[f]); v != "" {
			want[f] = v
		}
	}
	row, err := c.findRow(ctx, op, SpecialCodeListPath, integrationID, func(row map[string]json.RawMessage) bool { return rowMatches(row, want) })
	return row != nil, err
}

// FindKasaCard looks a kasa card up by its ERP integration_id (POST
// …/erp_kasa_fisi/list, filtered on integration_id) and returns its
// Ödüyo id; "" when Ödüyo has no such card. Used when Ödüyo refused an
// update that carried no id. Tolerant as FindSpecialCode is: every row's
// integration_id is checked here, a 404 or an empty "data" means none, a
// server that ignores the filter is paged through (up to lookupMaxPages,
// then ErrLookupInconclusive). A row found without a usable id (a
// positive integer) is an error, not "none".
func (c *Client) FindKasaCard(ctx context.Context, integrationID string) (string, error) {
	const op = "look up kasa card"
	if integrationID == "" {
		return "", &Error{Op: op, Class: Permanent, Msg: "no integration_id to look the card up by"}
	}
	row, err := c.findRow(ctx, op, KasaListPath, integrationID, func(map[string]json.RawMessage) bool { return true })
	if err != nil || row == nil {
		return "", err
	}
	id := scalarString(row["id"])
	if n, perr := strconv.ParseUint(id, 10, 64); perr != nil || n == 0 {
		return "", &Error{Op: op, Class: Transient, Msg: "the card was found but its id is not a positive integer: " + strconv.Quote(c.redact(id))}
	}
	return id, nil
}

// findRow pages through a list call filtered on integration_id and
// returns the first row whose integration_id is the one asked for and
// that match accepts; nil when there is none.
func (c *Client) findRow(ctx context.Context, op, path, integrationID string, match func(map[string]json.RawMessage) bool) (map[string]json.RawMessage, error) {
	offset := 0
	for page := 0; page < lookupMaxPages; page++ {
		body, err := json.Marshal(map[string]any{
			"filters": []map[string]string{{"field": "integration_id", "operator": "=", "value": integrationID}},
			"params":  "",
			"limit":   strconv.Itoa(lookupPageSize),
			"offset":  strconv.Itoa(offset),
			"sorting": []map[string]string{{"field": "id", "sort": "ASC"}},
		})
		if err != nil {
			return nil, &Error{Op: op, Class: Permanent, Msg: "build request", Err: err}
		}
		obj, status, err := c.call(ctx, op, path, body)
		if err != nil {
			return nil, err
		}
		st, _ := boolStatus(obj)
		if !st {
			if status >= 400 && status != http.StatusNotFound {
				return nil, c.answerError(op, Transient, status, nil, mustJSON(obj))
			}
			return nil, nil // nothing found: 404 or 200 with "status": false
		}
		rows := listRows(obj["data"])
		maxID := -1
		for _, row := range rows {
			if scalarString(row["integration_id"]) == integrationID && match(row) {
				return row, nil
			}
			if id, err := strconv.Atoi(scalarString(row["id"])); err == nil && id > maxID {
				maxID = id
			}
		}
		if len(rows) < lookupPageSize {
			return nil, nil
		}
		if maxID < offset {
			break // the server does not page as documented
		}
		offset = maxID + 1
	}
	return nil, &Error{Op: op, Class: Transient, Msg: "the server ignores the integration_id filter and has more rows than a lookup reads", Err: ErrLookupInconclusive}
}

// call posts a JSON body to an API path with the session, logging in again
// once on 401/403, and returns the answer when it is Ödüyo's (a JSON object
// with a boolean status) and not a 408, 429 or 5xx.
func (c *Client) call(ctx context.Context, op, path string, body []byte) (map[string]json.RawMessage, int, error) {
	for attempt := 0; ; attempt++ {
		sid, gen, err := c.ensureSession(ctx)
		if err != nil {
			return nil, 0, err
		}
		status, hdr, resp, err := c.post(ctx, path, sid, "", body)
		if err != nil {
			return nil, 0, &Error{Op: op, Class: Transient, Msg: "request failed", Err: err}
		}
		if retryable(status) {
			return nil, status, c.answerError(op, Transient, status, hdr, resp)
		}
		if status >= 300 && status < 400 {
			return nil, status, c.redirectError(op, status, hdr)
		}
		obj, kind := decodeAnswer(resp)
		if _, ok := boolStatus(obj); !ok {
			return nil, status, foreignError(op, status, obj, kind)
		}
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			if attempt == 0 {
				c.invalidate(gen)
				c.log.Info("oduyo session rejected, logging in again", "op", op, "status", status)
				continue
			}
			e := c.answerError(op, Auth, status, hdr, resp)
			e.Msg = "refused again right after a fresh login: " + e.Msg
			return nil, status, e
		}
		return obj, status, nil
	}
}

func rowMatches(row map[string]json.RawMessage, want map[string]string) bool {
	for f, v := range want {
		if raw, ok := row[f]; ok && string(raw) != "null" && scalarString(raw) != v {
			return false
		}
	}
	return true
}

// listRows reads "data" as a list of objects, or one object; anything
// else is no rows.
func listRows(raw json.RawMessage) []map[string]json.RawMessage {
	var rows []map[string]json.RawMessage
	if json.Unmarshal(raw, &rows) == nil {
		return rows
	}
	var one map[string]json.RawMessage
	if json.Unmarshal(raw, &one) == nil && one != nil {
		return []map[string]json.RawMessage{one}
	}
	return nil
}

// scalarString reads a JSON string or number as text.
func scalarString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return strings.TrimSpace(string(raw))
}

func mustJSON(obj map[string]json.RawMessage) []byte {
	b, _ := json.Marshal(obj)
	return b
}
