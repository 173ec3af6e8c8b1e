package localapi

import (
	"io"
	"net/http"
	"strconv"

	"github.com/tposagent/tposagent/agent/records"
)

// readBody reads a request body of at most MaxBody bytes into one buffer
// sized from Content-Length when the client sent it (io.ReadAll would grow
// its buffer several times for a typical record). A longer body fails
// with *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBody {
		// Refused before a byte of it is read (and the connection closed).
		return nil, &http.MaxBytesError{Limit: MaxBody}
	}
	body := http.MaxBytesReader(w, r.Body, MaxBody)
	if n := r.ContentLength; n > 0 && n <= MaxBody {
		buf := make([]byte, 0, n+1) // +1: EOF is seen without a regrow
		for {
			m, err := body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err == io.EOF {
				return buf, nil
			}
			if err != nil {
				return buf, err
			}
			if len(buf) == cap(buf) {
				rest, err := io.ReadAll(body)
				return append(buf, rest...), err
			}
		}
	}
	return io.ReadAll(body)
}

// writeAccepted writes the 202 of an enqueue: the bytes writeJSON would
// write for acc, without reflection.
func writeAccepted(w http.ResponseWriter, acc Accepted) {
	b := make([]byte, 0, 64+len(acc.Key))
	b = append(b, "{\n  \"id\": "...)
	b = strconv.AppendUint(b, acc.ID, 10)
	b = append(b, ",\n  \"key\": "...)
	b = records.AppendJSONString(b, acc.Key, true)
	b = append(b, "\n}\n"...)
	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=utf-8"}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusAccepted)
	w.Write(b)
}
