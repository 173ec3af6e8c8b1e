package records

import (
	"encoding/json"
	"strconv"
)

// KasaNames returns every key a kasa card column (as from NormalizeKasa)
// is known by: "kasa:id:<id>" when it has an id, "kasa:int:<integration_id>"
// when it has an integration_id, in that order. The first is the key
// NormalizeKasa returns; the queue maps the others to it, so that every
// update of one card shares one key whichever of the two it carries.
func KasaNames(column json.RawMessage) []string {
	var c struct {
		ID            json.Number `json:"id"`
		IntegrationID string      `json:"integration_id"`
	}
	if json.Unmarshal(column, &c) != nil {
		return nil
	}
	var names []string
	if id, err := strconv.ParseUint(c.ID.String(), 10, 64); err == nil && id > 0 {
		names = append(names, "kasa:id:"+strconv.FormatUint(id, 10))
	}
	if c.IntegrationID != "" {
		names = append(names, "kasa:int:"+c.IntegrationID)
	}
	return names
}
