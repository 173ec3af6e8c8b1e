package outbox_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tposagent/tposagent/outbox"
)

// FuzzDecodeRecord feeds the record decoder what a damaged file could hold:
// it must return an error or an item, never panic, and what it decodes
// must encode back to the same bytes when it came from the encoder.
func FuzzDecodeRecord(f *testing.F) {
	it := outbox.Item{Kind: outbox.KindKasa, Key: "kasa:1", Payload: json.RawMessage(`{"ad":"Çağrı"}`),
		IdempotencyKey: "abc", Created: time.Unix(1, 2), Attempts: 3, LastError: "HTTP 500", Coalesce: true}
	f.Add(outbox.EncodeRecordForTest(it))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 200, 1, '{'})
	f.Add([]byte{})
	f.Add([]byte{2, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := outbox.DecodeRecordForTest(b)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(b, got.Payload) {
			t.Fatalf("payload %q is not the tail of the record", got.Payload)
		}
	})
}
