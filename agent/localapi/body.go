package localapi

import (
	"io"
	"net/http"
	"slices"
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
		// +1: EOF is seen without a regrow. A large body announced is not
		// allocated before it arrives: a caller that announces 64 KiB and
		// sends a byte costs no more than what it sent.
		buf := make([]byte, 0, min(n+1, preallocBody))
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
				if int64(len(buf)) > n {
					rest, err := io.ReadAll(body) // longer than announced: MaxBytesReader ends it
					return append(buf, rest...), err
				}
				buf = slices.Grow(buf, int(min(n+1, 2*int64(cap(buf))))-len(buf))
			}
		}
	}
	return io.ReadAll(body)
}

// preallocBody is the most allocated for a body before its bytes arrive
// (records are typically well under it).
const preallocBody = 16 << 10

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
