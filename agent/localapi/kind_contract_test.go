package localapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/outbox"
)

// TestOutboxItemKindsInDocument: every kind an outbox item can have,
// the damaged dead letter's "unreadable" included, matches the document's
// OutboxItem; a list holding one would otherwise break a client generated
// from it. The document before this test listed kasa and special_code
// only.
func TestOutboxItemKindsInDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(localapi.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	ref := doc.Components.Schemas["OutboxItem"]
	if ref == nil || ref.Value == nil {
		t.Fatal("no OutboxItem schema")
	}
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	for _, k := range []outbox.Kind{outbox.KindKasa, outbox.KindSpecialCode, outbox.KindUnreadable} {
		it := localapi.ItemView{ID: 7, Kind: localapi.Kind(k), Key: "k", Created: now, Attempts: 1, DeadAt: &now,
			DeadReason: "x", Payload: json.RawMessage(`{"unreadable_record_base64":"AAE="}`)}
		b, err := json.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		if err := ref.Value.VisitJSON(v); err != nil {
			t.Errorf("an item of kind %q does not match the document's OutboxItem: %v", k, err)
		}
	}
}
