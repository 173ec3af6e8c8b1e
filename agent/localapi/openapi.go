package localapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.0 document of the local API, served at
// GET /v1/openapi.json without a token. A POS developer generates a client
// from it; the contract tests validate every request and answer of the
// handler against it.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(OpenAPI)
	}
}
