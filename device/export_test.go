package device

// SetOpenError makes r's port opens fail with err (busy, permission …
// cannot be produced with a pty when the tests run as root).
func SetOpenError(r *Reader, err error) {
	r.open = func(string, int) (port, error) { return nil, err }
}

var OpenError = openError
