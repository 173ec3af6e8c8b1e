package outbox

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzRecordMetaJSON: the hand-written header encoder writes exactly what
// json.Marshal writes, for any strings (Turkish, control characters, HTML
// characters, U+2028, invalid UTF-8) and any numbers.
func FuzzRecordMetaJSON(f *testing.F) {
	f.Add("kasa", "kasa:1", "idem-1", int64(1), 0, int64(0), "", false, "", int64(0), uint64(0), false, false)
	f.Add("special_code", "special_code:Çağrı", "\x00\"\\<>&\u2028\xff", int64(-5), 7, int64(99), "HTTP 500: ş\n", true, "rejected\t", int64(1<<62), uint64(1<<63), true, true)
	f.Fuzz(func(t *testing.T, kind, key, idem string, created int64, attempts int, next int64, lastErr string, co bool, dr string, da int64,
		turn uint64, nl, u bool) {
		m := recordMeta{Kind: Kind(kind), Key: key, Idem: idem, Created: created, Attempts: attempts, Next: next,
			LastError: lastErr, Coalesce: co, DeadReason: dr, DeadAt: da, Turn: turn, NoLookup: nl, Undecided: u}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkEncodeRecord: the record encoder beside json.Marshal of its
// header (the encoder it replaced), in the same run.
func BenchmarkEncodeRecord(b *testing.B) {
	it := Item{ID: 1, Kind: KindKasa, Key: "kasa:12345", IdempotencyKey: "0123456789abcdef0123456789abcdef",
		Payload: json.RawMessage(`{"kasa_kodu":"12345","ad":"Çağrı"}`)}
	b.Run("appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeRecord(&it)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		m := recordMeta{Kind: it.Kind, Key: it.Key, Idem: it.IdempotencyKey}
		for b.Loop() {
			h, _ := json.Marshal(m)
			buf := make([]byte, 0, 1+10+len(h)+len(it.Payload))
			buf = append(append(append(buf, recordVersion), h...), it.Payload...)
			_ = buf
		}
	})
}
