// Package tposl is the client of the TPOS licence server (POST …/TPOSL):
// it builds ParamsTPOSKasaBilgisi, registers the till, turns the answer
// (ITPOSReturn) into a licence state and keeps the last good answer for
// use while offline.
//
// The pieces, in the order the agent uses them:
//
//   - Build fills Params from the [store] config (Store), what the agent
//     found out (Facts) and the web access Credentials.
//   - Client.Register posts Params as JSON and decodes the JSON or XML
//     answer into Return; failures are an *Error with a Kind.
//   - Evaluate turns Return into a License (pure; the table in docs/protocols.md).
//   - Cache saves the last good answer; Effective re-evaluates it while the
//     server cannot be reached and decays it to "unknown" after the grace
//     period (DefaultGrace, 7 days).
//
// # Length limits
//
// The spec gives "String length: inclusive between 0 and N" for twelve
// fields. The server is .NET, which counts UTF-16 code units; Turkish
// letters (ğüşıöçİ) are one unit each, so for Turkish text this is the
// number of characters. Limits are counted so, never in bytes.
//
//	field               limit  over the limit
//	VERGI_NUMARASI        35   error: identifies the taxpayer
//	VERGI_DAIRESI         50   error: configured; a shortened office name is wrong data
//	FIRMA_ADI            200   error: configured; the registered company name
//	YK_FISCAL_SERI_NO     40   error: identifies the device the licence is bound to
//	E_FAT_NO_BAS_KOD      15   error: a document number prefix must be exact
//	E_ARV_NO_BAS_KOD      15   error: as above
//	PC_NAME              200   truncated: informational host name
//	VERSIYON              35   truncated: informational (the agent's version)
//	TPOS_VERSIYON         30   truncated: informational, read from the TPOS install
//	TPOS_VERSIYON_SIRA    30   truncated: as above
//	SON_YEDEK_ZAMANI      35   truncated: always 19 characters in practice
//	KASA_TARIH_SAAT       35   truncated: always 19 characters in practice
//
// An error is a *FieldError naming the field, the limit and the length
// (never the value). Truncation keeps whole runes. Text that is not valid
// UTF-8 is a *FieldError too (Limit and Len zero): it would be changed on
// the wire. Build trims white space around every string except the
// credentials. Params.Validate checks the same before every Register, so
// hand-made Params are held to the limits as well.
//
// # Secrets
//
// WebErisimSifre appears only in the request body. Params and Credentials
// print it as "[REDACTED]" through String, every fmt verb and slog; error
// text from Register has every occurrence of it (also JSON- and
// URL-escaped) replaced, whatever a server or proxy echoes back. Secrets
// shorter than 3 bytes are not scrubbed.
//
// It imports neither the Ödüyo client, the outbox nor the device: the
// agent hands it the identity and the host facts.
package tposl
