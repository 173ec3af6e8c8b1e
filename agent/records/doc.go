// Package records decides what a kasa card update or a special code may
// contain before the agent queues it, and gives each its canonical form and
// its FIFO key. It is pure (no I/O) and imports none of the agent's rooms:
// the local API calls it at the door, the outbox stores its output, the
// Ödüyo client sends it.
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
package records
